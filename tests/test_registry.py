"""The step manifest is the one registry: every step is registered, exported, documented, runnable
through ``fw.run``, round-tripped through ``Results``, and tuned by a tool when marked tunable."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import fourd_widgets as fw
from fourd_widgets.core import registry
from fourd_widgets.core.errors import ParameterError
from fourd_widgets.core.recipe import Recipe
from fourd_widgets.io.results import Results

ROOT = Path(__file__).resolve().parent.parent
STEPS = sorted(registry.manifest().steps)


def _cube() -> fw.DataCube:
    """A small strained crystal with its calibration (origin set), enough for every step."""
    rx, _ = np.meshgrid(np.arange(6), np.arange(6), indexing="ij")
    cube, _ = fw.datasets.simulate((6, 6), (64, 64), strain={"exx": 0.004 * rx}, reciprocal_step=0.03,
                                   convergence_semiangle_mrad=1.5, seed=5)
    return cube


def test_manifest_lists_the_steps_of_every_family():
    assert {"virtual_image", "virtual_diffraction", "probe_template", "find_disks", "origin", "origin_fit",
            "ellipse", "pixel_size", "qr_rotation", "strain_map"} <= set(STEPS)
    for name in STEPS:
        s = registry.step(name)
        assert s.record_class().step == name, name
        assert callable(registry.resolve(s.function)) and callable(s.runner()), name


def test_import_is_light_and_records_load_without_importing_steps():
    code = ("import sys, json, fourd_widgets as fw\n"
            "assert not [m for m in sys.modules if m.startswith('fourd_widgets.analysis')], sorted(sys.modules)\n"
            "assert 'numba' not in sys.modules\n"
            "import numpy as np\n"
            "from fourd_widgets.core.datacube import DataCube\n"
            "assert DataCube(np.ones((2, 2, 3, 3))).mean_pattern(progress=False).tolist() == [[1.0] * 3] * 3\n"
            "from fourd_widgets.core.recipe import Recipe\n"
            "r = Recipe.from_json(open(sys.argv[1]).read())\n"
            "print(json.dumps([s.step for s in r.steps]))\n")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "tests/fixtures/v1/recipe.json")],
                         capture_output=True, text=True, cwd=ROOT, env={**__import__("os").environ,
                                                                       "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0] == "virtual_image"


@pytest.mark.parametrize("name", STEPS)
def test_step_is_exported_and_documented(name):
    s = registry.step(name)
    fam = getattr(fw, s.family)
    fn, cls = registry.resolve(s.function), s.record_class()
    assert getattr(fam, fn.__name__) is fn and getattr(fam, cls.__name__) is cls
    assert fn.__doc__ and cls.__doc__
    assert f"| `{name}` |" in (ROOT / "README.md").read_text(encoding="utf-8")
    top = registry.families()[s.family].top
    for n in top:
        assert getattr(fw, n) is getattr(fam, n)


def test_readme_step_table_is_current():
    out = subprocess.run([sys.executable, str(ROOT / "scripts/gen_step_table.py"), "--check"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("name", STEPS)
def test_tunable_step_has_a_tool(name):
    s = registry.step(name)
    if not s.tunable:
        return
    assert s.tool is not None, f"step {name} is marked tunable but no tool declares it"
    assert s.tool.view.startswith("fourd_widgets.widgets")
    assert registry.resolve(s.tool.view).__name__ == s.tool.view.partition(":")[2]
    assert s.tool.session.startswith("fourd_widgets.tools.")
    module = s.tool.session.partition(":")[0]
    if importlib.util.find_spec(module.rpartition(".")[0]) and importlib.util.find_spec(module):
        # the tools layer is being written: check the session once its module exists
        assert callable(registry.resolve(s.tool.session))


@pytest.mark.slow
def test_every_step_runs_through_fw_run_and_round_trips_through_results(tmp_path):
    cube = _cube()
    order = registry.run_order()  # every step, each after the steps it needs
    assert set(order) == set(STEPS)
    res = fw.run(Recipe(tuple(registry.step(n).example_record() for n in order)), cube)
    back = Results.load(res.save(tmp_path / "all.h5"))
    for name in order:
        s = registry.step(name)
        value = res[name]
        result_cls = np.ndarray if s.result == "numpy:ndarray" else registry.resolve(s.result)
        assert isinstance(value, result_cls), name
        assert isinstance(back[name], result_cls), name
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(back[name], value)
        elif isinstance(value, fw.Calibration):
            assert back[name].to_dict() == value.to_dict()
        else:
            for k, v in (kv for kv in vars(value).items() if not kv[0].startswith("_")):
                np.testing.assert_array_equal(np.asarray(vars(back[name])[k]), np.asarray(v), err_msg=f"{name}.{k}")
    # the calibration steps passed their calibration on (the manifest flag, not the result type, decides)
    assert res["origin_fit"].origin_map is not None and res["qr_rotation"].rotation_deg == 2.0
    assert res["pixel_size"].ellipse == res["ellipse"].ellipse


def test_unknown_step_names_the_known_ones():
    with pytest.raises(ParameterError, match="runnable steps: .*find_disks"):
        registry.step("no_such_step")


def test_a_manifest_file_added_to_a_folder_declares_a_family(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({
        "family": "toy", "exports": [], "top": ["toy_fn"],
        "steps": [{"name": "toy", "params": "fourd_widgets.x:P", "function": "fourd_widgets.x:toy_fn",
                   "result": "numpy:ndarray", "tunable": True}]}))
    (tmp_path / "b.json").write_text(json.dumps({"tools": [{"name": "ToyTool", "steps": ["toy"],
                                                            "session": "fourd_widgets.tools.toy:ToySession",
                                                            "view": "fourd_widgets.widgets.toy:ToyTool"}]}))
    m = registry.manifest(tmp_path)
    assert m.steps["toy"].tool.name == "ToyTool" and m.families["toy"].top == ("toy_fn",)
    (tmp_path / "c.json").write_text(json.dumps({"family": "toy"}))
    registry._cached.cache_clear()
    with pytest.raises(ParameterError, match="family 'toy' is already declared"):
        registry.manifest(tmp_path)


def test_deprecated_center_spelling_still_works():
    t = fw.PeakTable((1,), [0, 1], qx=[3.0], qy=[3.0], intensity=[1.0], correlation=[1.0])
    new = fw.bragg_vector_map(t, (8, 8), origin=(3.0, 3.0), center=(2, 2))
    with pytest.warns(DeprecationWarning, match="centre= is deprecated"):
        old = fw.bragg_vector_map(t, (8, 8), origin=(3.0, 3.0), centre=(2, 2))
    np.testing.assert_array_equal(old, new)
    assert new[2, 2] == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fw.bragg_vector_map(t, (8, 8))


# The public names before the manifest (fw.__all__ and fw.analysis.__all__ of 0c34757).
OLD_TOP = ("Explorer ImageView CalibrationTool StrainMapper DiskTuner __version__ errors datasets engine Calibration "
           "DataCube Params Recipe Results load describe run detectors detector_mask virtual_image virtual_diffraction "
           "VirtualImageParams VirtualDiffractionParams ProbeTemplateParams probe_template FindDisksParams find_disks "
           "PeakTable bragg_vector_map DiskLatticeParams snap_to_lattice OriginParams OriginFitParams EllipseParams "
           "PixelSizeParams QRRotationParams measure_origin fit_origin fit_ellipse measure_pixel_size "
           "measure_qr_rotation undistort_cube StrainMap StrainMapParams strain_map suggest_basis").split()
OLD_ANALYSIS = ("detectors detector_mask run VirtualImageParams VirtualDiffractionParams virtual_image "
                "virtual_diffraction ProbeTemplateParams probe_template FindDisksParams PeakTable find_disks "
                "bragg_vector_map calibration strain disk_lattice DiskLatticeParams snap_to_lattice OriginParams "
                "OriginFitParams EllipseParams PixelSizeParams QRRotationParams measure_origin fit_origin fit_ellipse "
                "measure_pixel_size measure_qr_rotation undistort_cube StrainMap StrainMapParams strain_map "
                "suggest_basis").split()


def test_names_public_before_the_manifest_still_resolve():
    import fourd_widgets.analysis as analysis

    assert set(OLD_TOP) <= set(fw.__all__)
    for name in OLD_TOP:
        assert getattr(fw, name) is not None, name
    for name in OLD_ANALYSIS:
        assert getattr(analysis, name) is not None, name
    assert callable(fw.run) and callable(analysis.run)
    assert fw.find_disks is analysis.find_disks is fw.disks.find_disks


def test_tools_list_for_the_dashboard():
    names = {t.name: t for t in registry.tools()}
    assert {"Explorer", "DiskTuner", "CalibrationTool", "StrainMapper"} <= set(names)
    assert names["Explorer"].view_class() is fw.Explorer
    assert set(names["CalibrationTool"].steps) == {"origin", "origin_fit", "ellipse"}


def test_a_tool_names_its_dashboard_page_or_gets_its_name_in_lower_case(tmp_path):
    tool = {"name": "ToyTool", "steps": [], "session": "fourd_widgets.tools.toy:ToySession",
            "view": "fourd_widgets.widgets.toy:ToyTool"}
    (tmp_path / "a.json").write_text(json.dumps({"tools": [tool, {**tool, "name": "Other", "page": "toy-2"}]}))
    pages = {t.name: t.page for t in registry.manifest(tmp_path).tools}
    assert pages == {"ToyTool": "", "Other": "toy-2"}
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.json").write_text(json.dumps({"tools": [{**tool, "page": "Phase Tuner"}]}))
    with pytest.raises(ParameterError, match="page 'Phase Tuner' must be a short lower-case name"):
        registry.manifest(bad)
    # the registered tools' pages are short words a microscopist reads as tab titles
    from fourd_widgets.app.chain import dashboard_pages

    assert {"explore", "disks", "calibration", "strain", "phase", "polar", "orientation", "classes"} <= {
        p.name for p in dashboard_pages()}
