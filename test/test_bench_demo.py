"""`probpose bench` runs end to end (behaviour only; no timing asserted). `probpose demo`: test_demo.py."""
from probpose_core.bench import run_bench


def test_bench_reports_every_item():
    lines = []
    rows = run_bench(repeats=1, persons=2, batch=4, out=lines.append)
    assert any(name.startswith("decode expected_oks") for name in rows)
    assert any(name.startswith("sparsemax + all losses") for name in rows)
    assert all(v["total_ms"] > 0 for v in rows.values())
    assert any(line.startswith("ratio decode") for line in lines)


def test_model_bench_times_every_runtime(tmp_path):
    from probpose_core.bench_model import run_model_bench
    from probpose_core.models.checkpoints import save_checkpoint
    from probpose_core.models.pose_model import build_model, cnn_config

    config = cnn_config()
    save_checkpoint(tmp_path / "m.pt", build_model(config).eval(), config)
    lines = []
    results = run_model_bench(tmp_path / "m.pt", repeats=1, out=lines.append)
    assert {"torch fp32", "ort fp32", "ort int8"} <= set(results)
    assert all(results["ort fp32"][b] > 0 for b in (1, 4, 8))
    assert results["pipeline"]["pre_ms"] > 0
    assert any("ratio ORT int8 / ORT fp32" in line for line in lines)
