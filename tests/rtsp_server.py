"""A test RTSP server (gst-rtsp-server through python3-gi): one still image served as a Motion-JPEG stream at
/label, behind basic authentication. Run with the system Python, which sees Debian's gi module:

    /usr/bin/python3 tests/rtsp_server.py PORT IMAGE USER PASSWORD

Prints "ready" on stdout once it listens; runs until killed. Needs gstreamer1.0-rtsp, gir1.2-gst-rtsp-server-1.0,
python3-gi and gstreamer1.0-plugins-good (pngdec, imagefreeze, jpegenc, rtpjpegpay).
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> int:
    port, image, user, password = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(f"( filesrc location={image} ! pngdec ! videoconvert ! imagefreeze is-live=true ! "
                       "video/x-raw,framerate=5/1 ! videoconvert ! video/x-raw,format=I420 ! jpegenc quality=90 ! "
                       "rtpjpegpay name=pay0 pt=26 )")
    factory.set_shared(True)
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
    server.set_auth(auth)
    permissions = GstRtspServer.RTSPPermissions()
    permissions.add_role_from_structure(Gst.Structure.from_string(
        "viewer, media.factory.access=(boolean)true, media.factory.construct=(boolean)true")[0])
    factory.set_permissions(permissions)
    server.get_mount_points().add_factory("/label", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on port {port}", file=sys.stderr, flush=True)
        return 1
    print("ready", flush=True)
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
