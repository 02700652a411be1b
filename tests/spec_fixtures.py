"""Specs several test files share (imported by name: conftest puts tests/ on sys.path)."""

# a small two-level detector, the fixture the detection defects were found with
SDET = """\
net SDet(NCLS = 2)
input x: [3, H = 64, W = 64] where H % 16 == 0, W % 16 == 0
a = x |> conv(8, 3, stride=2, padding=1) -> relu
b = a |> conv(8, 3, stride=2, padding=1) -> relu
p3 = b |> conv(8, 3, stride=2, padding=1) -> relu
p4 = p3 |> conv(8, 3, stride=2, padding=1) -> relu
output = detect(p3, p4, classes=NCLS, strides=[8, 16], anchors=[[10, 13, 16, 30], [30, 61, 62, 45]])
"""
