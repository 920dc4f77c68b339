"""Bad input of the Databiox builder: each problem skipped or counted."""

from absl.testing import absltest
import numpy as np
from PIL import Image

from mammojax.data.builders import databiox  # pylint: disable=unused-import
from tests.data.builders import trees
from tests.data.sources import fixtures


def _jpeg(path, rng, mode="RGB"):
  path.parent.mkdir(parents=True, exist_ok=True)
  shape = (30, 40, 3) if mode == "RGB" else (30, 40)
  Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(
      path, format="JPEG")


class DataboxBadInputTest(absltest.TestCase):

  def test_problems_are_skipped_and_counted(self):
    root = fixtures.tmpdir(self)
    rng = np.random.default_rng(0)
    good = [
        "BC_IDC_Grade_1/40x/01_BC_G1_9057_40x_1.JPG",
        "BC_IDC_Grade_1/10x/01_BC_G1_9057_10x_1.JPG",
        "BC_IDC_Grade_2/40x/01_BC_G2_8986_40x_1.JPG",
        "BC_IDC_Grade_3/40x/01_BC_G3_10349_40x_1.JPG",
    ]
    for name in good:
      _jpeg(root / name, rng)
    # Unknown grade folder (two files, both skipped).
    _jpeg(root / "BC_IDC_Grade_4/40x/01_BC_G1_7000_40x_1.JPG", rng)
    _jpeg(root / "BC_IDC_Grade_4/4x/01_BC_G1_7000_4x_1.JPG", rng)
    # Unreadable and grayscale JPEGs.
    bad = root / "BC_IDC_Grade_2/40x/02_BC_G2_8100_40x_1.JPG"
    bad.write_bytes(b"\xff\xd8 truncated")
    _jpeg(root / "BC_IDC_Grade_3/40x/02_BC_G3_8200_40x_1.JPG", rng, "L")
    # Patient 9999 in grades 1 and 3 (names agree with their folders).
    _jpeg(root / "BC_IDC_Grade_1/40x/05_BC_G1_9999_40x_1.JPG", rng)
    _jpeg(root / "BC_IDC_Grade_3/40x/05_BC_G3_9999_40x_1.JPG", rng)
    examples, metadata = trees.build("databiox", "tiny", root,
                                     fixtures.tmpdir(self))
    ids = sorted(e["example_id"] for e in examples["full"])
    self.assertEqual(ids, sorted(n.split("/")[-1][:-4] for n in good))
    report = metadata["build_report"]
    skips = dict(report["skip_counts"])
    unreadable = [k for k in skips if k.startswith("unreadable image (")]
    self.assertLen(unreadable, 1)
    self.assertEqual(skips.pop(unreadable[0]), 1)
    self.assertEqual(skips, {
        "unknown grade folder BC_IDC_Grade_4 (expected BC_IDC_Grade_1/2/3)":
            2,
        "patient in two grades (G1, G3)": 2,
        "grayscale image (mode L); expected an RGB H&E image": 1,
    })
    stats = report["stats"]
    # Grade 1 lacks 4x and 20x; grades 2 and 3 have only 40x.
    self.assertEqual(
        sorted(k for k in stats if k.startswith("missing magnification")),
        sorted([f"missing magnification folder BC_IDC_Grade_1/{m}"
                for m in ("4x", "20x")]
               + [f"missing magnification folder BC_IDC_Grade_{g}/{m}"
                  for g in (2, 3) for m in ("4x", "10x", "20x")]))


if __name__ == "__main__":
  absltest.main()
