"""Every shared test file loads with the shape, dtype and calibration its README gives,
and the values match what h5py / rosettasciio read directly."""

from __future__ import annotations

import sys
import types

import h5py
import numpy as np
import pytest

import fourd_widgets as fw

pytestmark = pytest.mark.shared_data

# From ../shared/data/README.md: scan x detector, and the calibration it states.
SIMULATED = {
    "si_001_unstrained.h5": ((16, 16, 128, 128), 1.0, 0.015625, 2.5, (64, 64)),
    "si_001_exx_1pct.h5": ((16, 16, 128, 128), 1.0, 0.015625, 2.5, (64, 64)),
    "si_001_exx_gradient.h5": ((16, 16, 128, 128), 1.0, 0.015625, 2.5, (64, 64)),
    "si_001_rot_10deg.h5": ((16, 16, 128, 128), 1.0, 0.015625, 2.5, (64, 64)),
    "si_001_bicrystal_10deg.h5": ((16, 16, 128, 128), 1.0, 0.015625, 2.5, (64, 64)),
    "si_polycrystal_4zones.h5": ((16, 16, 128, 128), 1.0, 0.015625, 2.5, (64, 64)),
    "si_amorphous_nanocrystals_fem.h5": ((16, 16, 128, 128), 4.0, 0.015625, 1.0, (64, 64)),
    "sto_001_ptycho_20mrad.h5": ((32, 32, 96, 96), 0.244, None, 20.0, (48, 48)),
}

SAMPLE_POSITIONS = [(0, 0), (1, 2), (-1, -1), (3, 0)]


@pytest.mark.parametrize("name", sorted(SIMULATED))
def test_simulated_files_load_with_readme_calibration(shared_data, name):
    shape, step_A, recip_invA, alpha, origin = SIMULATED[name]
    path = shared_data / name
    with fw.load(path) as cube:
        assert cube.shape == shape
        assert cube.dtype == np.float32
        cal = cube.calibration
        assert cal.real_units == "Å" and cal.real_step == pytest.approx(step_A, rel=2e-3)
        assert cal.reciprocal_units == "1/Å"
        if recip_invA is not None:
            assert cal.reciprocal_step == pytest.approx(recip_invA)
        assert cal.energy_eV == 300e3
        assert cal.convergence_semiangle_mrad == pytest.approx(alpha)
        assert cal.origin == origin
        # the README's mrad sampling for Si follows from 1/Å sampling and 300 kV
        if name.startswith("si_"):
            assert cal.reciprocal_step_in("mrad") == pytest.approx(0.3076, abs=1e-4)
        with h5py.File(path, "r") as f:
            for rx, ry in SAMPLE_POSITIONS:
                np.testing.assert_array_equal(cube.pattern(rx, ry), f["data"][rx % shape[0], ry % shape[1]])
            np.testing.assert_array_equal(cube.read((2, 4), (5, 9), (10, 20), (0, 7)),
                                          f["data"][2:4, 5:9, 10:20, 0:7])
        # noise-free patterns hold about all of the probe intensity
        assert 0.9 < float(cube.pattern(0, 0).sum()) < 1.01


def _rsciio(module: str, path):
    import importlib

    if module == "blockfile" and "skimage" not in sys.modules:
        sys.modules["skimage"] = types.ModuleType("skimage")  # only its writer needs scikit-image
        try:
            mod = importlib.import_module("rsciio.blockfile")
        finally:
            del sys.modules["skimage"]
    else:
        mod = importlib.import_module(f"rsciio.{module}")
    return mod.file_reader(str(path), lazy=False)


# file, rsciio module, options, expected shape, dtype, calibration fields (README table)
REAL = [
    ("sped_nanomegas_3x2x144x144.blo", "blockfile", {}, (3, 2, 144, 144), np.uint8,
     {"real_step": 12.8, "real_units": "nm"}),
    ("merlin_4x2x256x256_6bit.mib", "quantumdetector", {}, (2, 4, 256, 256), np.uint8, {}),
    ("merlin_4x2x256x256_6bit.hdr", "quantumdetector", {}, (2, 4, 256, 256), np.uint8, {}),
    ("prismatic_si100_4d.emd", "emd", {}, (11, 11, 8, 8), np.float32,
     {"real_step": 0.5, "real_units": "nm", "reciprocal_units": "1/nm"}),
    ("py4dstem_datacube_2x3x4x5.h5", "emd", {}, (2, 3, 4, 5), np.float32,
     {"real_units": "nm", "reciprocal_units": "1/Å"}),
    ("de_mrc/20241021_00405_movie.mrc", "mrc", {}, (4, 8, 4, 8), np.uint16, {}),
    ("moo3_spot_pattern_merlin_20cm.tif", "tiff", {}, (1, 1, 256, 256), np.float32, {}),
    ("au_xgrating_ring_pattern_merlin_20cm.tif", "tiff", {}, (1, 1, 256, 256), np.float32, {}),
    ("amorphous_diffraction_titan_200kV.hspy", "hspy", {}, (1, 1, 512, 512), np.int64, {"energy_eV": 200e3}),
    ("sped_ag_cluster_mean_patterns_5x112x112.hspy", "hspy", {"scan_shape": (5, 1)}, (5, 1, 112, 112),
     np.uint32, {"reciprocal_step": 0.02673, "reciprocal_units": "1/Å"}),
]


@pytest.mark.parametrize("name,module,options,shape,dtype,cal", REAL, ids=[r[0] for r in REAL])
def test_real_files_match_rosettasciio(shared_data, name, module, options, shape, dtype, cal):
    path = shared_data / "real" / name
    with fw.load(path, **options) as cube:
        assert cube.shape == shape
        assert cube.dtype == dtype
        for field, value in cal.items():
            got = getattr(cube.calibration, field)
            assert got == (pytest.approx(value, rel=1e-3) if isinstance(value, float) else value), field
        source = path.with_suffix(".mib") if name.endswith(".hdr") else path
        ref = _rsciio(module, source)
        ref = max(ref, key=lambda s: s["data"].ndim)["data"]
        if ref.ndim == 5:  # Prismatic depths: the default is the last one
            ref = ref[-1]
        ref = np.asarray(ref).reshape(shape)
        for rx, ry in [(0, 0), (shape[0] - 1, shape[1] - 1), (shape[0] // 2, 0)]:
            np.testing.assert_array_equal(cube.pattern(rx, ry), ref[rx, ry])
        np.testing.assert_array_equal(cube.to_numpy(), ref)


def test_prismatic_index_picks_the_depth(shared_data):
    path = shared_data / "real" / "prismatic_si100_4d.emd"
    ref = np.asarray(_rsciio("emd", path)[0]["data"])
    assert ref.ndim == 5 and ref.shape[0] == 2
    for i in (0, 1):
        with fw.load(path, index=i) as cube:
            np.testing.assert_array_equal(cube.to_numpy(), ref[i])
    with pytest.raises(fw.errors.ParameterError, match="index="):
        fw.load(path, index=2)


def test_real_calibration_values_follow_the_axes(shared_data):
    # prismatic: 0.5 nm scan, detector origin where the axis offset crosses zero
    ref = _rsciio("emd", shared_data / "real" / "prismatic_si100_4d.emd")[0]
    q = ref["axes"][-1]
    with fw.load(shared_data / "real" / "prismatic_si100_4d.emd") as cube:
        assert cube.calibration.reciprocal_step == pytest.approx(q["scale"])
        assert cube.calibration.origin[1] == pytest.approx(-q["offset"] / q["scale"])


def test_stack_without_scan_shape_asks_for_it(shared_data):
    path = shared_data / "real" / "sped_ag_cluster_mean_patterns_5x112x112.hspy"
    with pytest.raises(fw.errors.MissingOptionError) as info:
        fw.load(path)
    msg = str(info.value)
    assert path.name in msg and "5" in msg and "scan_shape" in msg
    with pytest.raises(fw.errors.ShapeError, match="5 frames"):
        fw.load(path, scan_shape=(2, 2))
