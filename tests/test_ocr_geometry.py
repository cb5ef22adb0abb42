"""Pure geometry of the OCR stages: letterbox and its inverse, quad order, unclip, crops, reading order."""
import cv2
import numpy as np
import pytest

from daemon.ocr.crops import crop_size, warp_crop
from daemon.ocr.db_post import DbParams, boxes_from_prob, min_area_quad, order_quad, unclip
from daemon.ocr.det_pre import letterbox_geometry, preprocess_det, to_frame_coords
from daemon.ocr.reading_order import reading_order


@pytest.mark.parametrize("h,w", [(960, 1280), (1536, 2048), (480, 640), (100, 1000), (2000, 300), (640, 640)])
def test_letterbox_keeps_aspect_and_fits(h, w):
    lb = letterbox_geometry(h, w, 640, 640)
    assert lb.new_h <= 640 and lb.new_w <= 640
    assert max(lb.new_h, lb.new_w) == 640
    assert abs(lb.new_w / lb.new_h - w / h) < 0.02 * (w / h) + 1 / lb.new_h


def test_small_frames_are_enlarged_at_most_max_upscale_and_padded():
    from daemon.ocr.det_pre import MAX_UPSCALE

    lb = letterbox_geometry(191, 384, 736, 960)            # OpenCV's page photo: 2.5x would fit
    assert lb.scale == MAX_UPSCALE == 2.0
    assert (lb.new_h, lb.new_w) == (382, 768)
    back = to_frame_coords(np.array([[lb.new_w, lb.new_h]], dtype=np.float32), lb, 191, 384)
    np.testing.assert_allclose(back, [[383, 190]], atol=1.0)    # still maps back onto the frame's corner
    assert letterbox_geometry(480, 640, 736, 960).scale == 1.5  # under the cap: fits the input as before


def test_letterbox_inverse_maps_input_corners_to_frame_corners():
    lb = letterbox_geometry(960, 1280, 640, 640)
    pts = np.array([[0, 0], [lb.new_w, 0], [lb.new_w, lb.new_h], [0, lb.new_h]], dtype=np.float32)
    back = to_frame_coords(pts, lb, 960, 1280)
    np.testing.assert_allclose(back, [[0, 0], [1279, 0], [1279, 959], [0, 959]], atol=1.0)
    mid = to_frame_coords(np.array([[lb.new_w / 2, lb.new_h / 2]]), lb, 960, 1280)
    np.testing.assert_allclose(mid, [[640, 480]], atol=1.0)


def test_preprocess_det_normalizes_and_zero_pads():
    frame = np.full((960, 1280, 3), 255, dtype=np.uint8)
    x, lb = preprocess_det(frame, 640, 640)
    assert x.shape == (3, 640, 640) and x.dtype == np.float32
    assert lb.new_h == 480 and lb.new_w == 640
    np.testing.assert_allclose(x[:, :480, :], 1.0, atol=1e-6)   # white -> (1 - 0.5) / 0.5
    assert np.all(x[:, 480:, :] == 0.0)


def test_order_quad_is_clockwise_from_top_left():
    shuffled = np.array([[10, 50], [100, 10], [0, 10], [110, 50]], dtype=np.float32)
    np.testing.assert_array_equal(order_quad(shuffled), [[0, 10], [100, 10], [110, 50], [10, 50]])


def test_unclip_grows_by_area_times_ratio_over_perimeter():
    quad = np.array([[0, 0], [100, 0], [100, 20], [0, 20]], dtype=np.float32)
    grown = unclip(quad, 1.5)
    distance = 100 * 20 * 1.5 / 240
    x0, y0, w, h = cv2.boundingRect(grown.astype(np.int32))
    assert abs(w - (100 + 2 * distance)) <= 2 and abs(h - (20 + 2 * distance)) <= 2


def test_db_boxes_recover_a_rotated_text_region():
    prob = np.zeros((200, 300), dtype=np.float32)
    rect = ((150, 100), (160, 24), 15.0)   # centre, size, angle: a shrunk text kernel
    cv2.fillPoly(prob, [cv2.boxPoints(rect).astype(np.int32)], 0.9)
    boxes = boxes_from_prob(prob, DbParams())
    assert len(boxes) == 1
    assert boxes[0].score > 0.75     # the mean over the quad, whose edge pixels lie partly outside the region
    for quad in (boxes[0].quad, boxes[0].text):
        (cx, cy), (bw, bh), _ = cv2.minAreaRect(quad)
        assert abs(cx - 150) < 3 and abs(cy - 100) < 3
        assert max(bw, bh) > 160 and min(bw, bh) > 24     # grown by the unclip


def _undilated_box(prob: np.ndarray, p: DbParams) -> np.ndarray:
    """What the unclip makes of the thresholded kernel itself, without the dilation."""
    contours, _ = cv2.findContours((prob > p.threshold).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    [contour] = contours
    kernel, _ = min_area_quad(contour)
    return min_area_quad(unclip(kernel, p.unclip_ratio))[0]


@pytest.mark.parametrize("size,angle", [((100, 6), 0.0), ((160, 8), 12.0), ((60, 20), -30.0), ((200, 5), 45.0)])
def test_the_text_box_is_the_kernel_grown_without_the_dilations_pixel(size, angle):
    # The dilation that joins characters adds a pixel right and down; the recognizer's quad keeps it (crops
    # read better with margin), the reported box does not, so small print is boxed where it lies.
    prob = np.zeros((240, 320), dtype=np.float32)
    cv2.fillPoly(prob, [cv2.boxPoints(((160.3, 120.6), size, angle)).round().astype(np.int32)], 0.9)
    p = DbParams()
    [box] = boxes_from_prob(prob, p)
    expected = _undilated_box(prob, p)
    (tx, ty), text_size, _ = cv2.minAreaRect(box.text)
    (ex, ey), expected_size, _ = cv2.minAreaRect(expected)
    (qx, qy), quad_size, _ = cv2.minAreaRect(box.quad)
    assert abs(tx - ex) < 0.35 and abs(ty - ey) < 0.35                # centred on the kernel
    assert abs(min(text_size) - min(expected_size)) < 0.6              # as thick as the kernel's own box
    assert abs(max(text_size) - max(expected_size)) < 0.6
    assert min(quad_size) > min(text_size) + 0.9     # the crop keeps the margin (pyclipper offsets in whole px)
    assert qx > tx and qy > ty                                         # shifted the way the dilation grew


def test_tiny_kernels_still_give_a_text_box_inside_the_crop():
    prob = np.zeros((60, 120), dtype=np.float32)
    prob[30:34, 20:90] = 0.95        # 4 px thick: near min_size
    [box] = boxes_from_prob(prob, DbParams())
    assert cv2.contourArea(box.text) < cv2.contourArea(box.quad)
    for x, y in box.text:
        assert cv2.pointPolygonTest(box.quad.reshape(-1, 1, 2), (float(x), float(y)), True) >= -0.5


def test_db_drops_low_score_and_tiny_regions():
    prob = np.zeros((100, 100), dtype=np.float32)
    prob[10:30, 10:60] = 0.35     # above threshold 0.3, below box threshold 0.5
    prob[50:52, 50:52] = 0.99     # smaller than min_size
    assert boxes_from_prob(prob, DbParams()) == []


@pytest.mark.parametrize("angle", [0.0, 8.0, -20.0])
def test_a_faint_word_just_past_a_lines_end_joins_the_line_and_faint_regions_elsewhere_do_not(angle):
    # a plate's kernel 100 x 12 (map pixels), its lone last letter 10 x 11 one kernel thickness past its end, marked
    # faintly (0.45: above the threshold, below the box threshold) as the detector marks it at native size
    prob = np.zeros((300, 400), dtype=np.float32)
    centre = np.array([150.0, 150.0])
    axis, normal = np.array([np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))]), None
    normal = np.array([-axis[1], axis[0]])

    def region(offset_along, offset_across, size, value):
        c = centre + offset_along * axis + offset_across * normal
        cv2.fillPoly(prob, [cv2.boxPoints(((c[0], c[1]), size, angle)).round().astype(np.int32)], value)

    region(0, 0, (100, 12), 0.9)                  # the line
    region(0, -60, (30, 11), 0.45)                # a faint region above the line: not part of it
    region(-(50 + 60 + 5), 0, (10, 11), 0.45)     # one on the axis but 60 px off: too far
    [alone] = boxes_from_prob(prob, DbParams())
    region(50 + 12 + 5, 0, (10, 11), 0.45)        # the lone letter, 12 px past the line's end
    [box] = boxes_from_prob(prob, DbParams())
    (cx, cy), size, _ = cv2.minAreaRect(box.text)
    (ax, ay), alone_size, _ = cv2.minAreaRect(alone.text)
    assert max(size) > max(alone_size) + 12 + 10 - 2                          # reaches over the letter
    assert (np.array([cx, cy]) - np.array([ax, ay])) @ axis > 10              # towards it
    assert min(size) < min(alone_size) + 2                   # no thicker: the region above is not taken


def test_warp_crop_straightens_a_rotated_line():
    frame = np.full((300, 400, 3), 255, dtype=np.uint8)
    rect = ((200, 150), (200, 40), -20.0)
    quad = order_quad(cv2.boxPoints(rect))
    cv2.fillPoly(frame, [quad.astype(np.int32)], (0, 0, 0))
    crop = warp_crop(frame, quad)
    assert crop_size(quad) == (200, 40) or crop_size(quad) == (40, 200)
    assert crop.shape[1] > crop.shape[0]                       # horizontal
    assert crop[5:-5, 5:-5].mean() < 30                        # the whole crop is the dark region


def test_tall_crop_is_turned_horizontal():
    frame = np.zeros((400, 100, 3), dtype=np.uint8)
    quad = np.array([[10, 10], [50, 10], [50, 300], [10, 300]], dtype=np.float32)
    crop = warp_crop(frame, quad)
    assert crop.shape[:2] == (40, 290)


def test_reading_order_goes_by_line_then_left_to_right():
    def box(x, y, w=50, h=20):
        return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], dtype=np.float32)

    quads = [box(300, 102), box(10, 200), box(10, 100), box(150, 98), box(400, 205)]
    assert reading_order(quads) == [2, 3, 0, 1, 4]
    assert reading_order([]) == []
