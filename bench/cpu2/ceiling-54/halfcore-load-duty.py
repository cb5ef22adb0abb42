import time, sys
duty = float(sys.argv[1]); end = time.time() + float(sys.argv[2])
while time.time() < end:
    t = time.perf_counter()
    while time.perf_counter() - t < 0.01 * duty: pass
    time.sleep(0.01 * (1 - duty))
