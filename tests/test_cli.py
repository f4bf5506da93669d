"""The command line: ``python -m img2vid demo`` / ``preview``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from img2vid.__main__ import main


@pytest.fixture
def image_file(tmp_path):
    # A white square on black, off-centre, so a translation visibly moves it.
    array = np.zeros((20, 24, 3), dtype=np.uint8)
    array[6:12, 4:10] = 255
    path = tmp_path / "square.png"
    PIL.Image.fromarray(array).save(path)
    return path


def _frames(strip: np.ndarray, T: int, width: int, height: int, gap: int = 2) -> list[np.ndarray]:
    return [strip[gap:gap + height, gap + i * (width + gap):gap + i * (width + gap) + width] for i in range(T)]


def test_preview_writes_a_png_strip_of_the_frames(image_file, tmp_path, capsys):
    out = tmp_path / "sub" / "clip.png"
    assert main(["preview", "--genotype", "translate_x:0.25", "--image", str(image_file), "-o", str(out),
                 "--T", "3"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    strip = np.asarray(PIL.Image.open(out).convert("RGB"))
    assert strip.shape == (20 + 4, 3 * 24 + 4 * 2, 3)
    frames = _frames(strip, 3, 24, 20)
    # centered frames: powers -1, 0, 1; the middle frame is the image; content moves right by 6 px.
    np.testing.assert_array_equal(frames[1][..., 0], np.asarray(PIL.Image.open(image_file))[..., 0])
    columns = [np.flatnonzero(frame[..., 0].max(0) > 127) for frame in frames]
    assert [int(c.max()) for c in columns] == [9 - 6, 9, 9 + 6]
    assert [int(c.min()) for c in columns] == [0, 4, 4 + 6]  # the left frame's square is cut at the border
    assert "wrote" in capsys.readouterr().out


def test_preview_zoom_size_and_forward_frames(image_file, tmp_path):
    out = tmp_path / "clip.png"
    assert main(["preview", "--genotype", "rotate:10,scale:1.1", "--image", str(image_file), "-o", str(out),
                 "--T", "4", "--frames", "forward", "--size", "10", "--zoom", "3"]) == 0
    # shorter side 20 -> 10 (24 -> 12), each pixel drawn 3 x 3
    assert PIL.Image.open(out).size == (4 * 36 + 5 * 2, 30 + 2 * 2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--genotype", "teleport:1"], "unknown op"),
        (["--genotype", "translate_x:abc"], "not a number"),
        (["--genotype", "identity", "--T", "0"], "--T"),
        (["--genotype", "identity", "--zoom", "0"], "--zoom"),
    ],
)
def test_preview_bad_input_exits_with_a_clear_error(image_file, tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["preview", "--image", str(image_file), "-o", str(tmp_path / "x.png"), *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_preview_missing_or_unreadable_image(tmp_path, capsys):
    out = str(tmp_path / "x.png")
    with pytest.raises(SystemExit):
        main(["preview", "--genotype", "identity", "--image", str(tmp_path / "nope.png"), "-o", out])
    assert "is not a file" in capsys.readouterr().err
    junk = tmp_path / "junk.png"
    junk.write_text("not an image")
    with pytest.raises(SystemExit):
        main(["preview", "--genotype", "identity", "--image", str(junk), "-o", str(tmp_path / "x.png")])
    assert "not an image" in capsys.readouterr().err


@pytest.mark.parametrize("command", [[], ["demo"], ["preview"]])
def test_help_works_for_every_command(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "usage:" in text
    if command == ["demo"]:
        for flag in ("--quick", "--device", "--out", "--seeds", "--dataset", "--root", "--per-class", "--arms",
                     "--search-seeds", "fashion-mnist", "imagefolder"):
            assert flag in text
    if command == ["preview"]:
        assert "--genotype" in text and "--image" in text and "--T" in text


def test_no_command_is_an_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seeds", "0"], "--seeds must be >= 1"),
        (["--per-class", "0"], "--per-class must be >= 1"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
        (["--search-epochs", "-1"], "--search-epochs must be >= 0"),
        (["--lr", "0"], "--lr must be > 0"),
        (["--arms", "baseline,mixup"], "unknown arm(s) ['mixup']"),
        (["--arms", "das"], "must include 'baseline'"),
        (["--dataset", "imagefolder"], "needs --root DIR"),
        (["--fixed", "wobble:1"], "unknown op"),
        (["--device", "tpu", "--arms", "baseline"], "not a torch device"),
    ],
)
def test_demo_bad_input_exits_with_a_clear_error(capsys, tmp_path, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--out", str(tmp_path), *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_demo_on_an_imagefolder_tree(tmp_path, one_thread):
    from PIL import Image

    for split, n in (("train", 4), ("test", 3)):
        for k in range(2):
            (tmp_path / "data" / split / f"class{k}").mkdir(parents=True)
            for i in range(n):
                folder = tmp_path / "data" / split / f"class{k}"
                Image.new("RGB", (9, 9), (200 * k, 30 * i, 0)).save(folder / f"{i}.png")
    code = main(["demo", "--dataset", "imagefolder", "--root", str(tmp_path / "data"), "--per-class", "2",
                 "--image-size", "8", "--quick", "--arms", "baseline,replica,trivialaugment", "--no-progress",
                 "--batch-size", "3", "--lr", "0.02", "--out", str(tmp_path / "out")])
    assert code == 0
    import json

    result = json.loads((tmp_path / "out" / "results.json").read_text())
    assert result["data"]["test"] == 6 and result["config"]["dataset"] == "imagefolder"
    assert (result["config"]["batch_size"], result["config"]["lr"]) == (3, 0.02)
    assert [row["arm"] for row in result["table"]] == ["baseline", "replica", "trivialaugment"]


def test_python_dash_m_runs(image_file, tmp_path):
    out = tmp_path / "clip.png"
    done = subprocess.run([sys.executable, "-m", "img2vid", "preview", "--genotype", "translate_y:0.1", "--image",
                           str(image_file), "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert out.is_file()


def test_preview_and_help_do_not_import_the_benchmark(image_file, tmp_path):
    code = (
        "import sys\n"
        "from img2vid.__main__ import main\n"
        f"main(['preview', '--genotype', 'rotate:5', '--image', {str(image_file)!r}, '-o', "
        f"{str(tmp_path / 'clip.png')!r}])\n"
        "for argv in (['--help'], ['preview', '--help'], ['demo', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(name for name in sys.modules if name.startswith('img2vid.experiments')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "clip.png").is_file()


def test_the_demo_names_in_the_parser_are_the_benchmarks():
    from img2vid import __main__ as cli
    from img2vid.experiments import arms, config, datasets, networks

    assert cli.DATASETS == tuple(datasets.DATASETS)
    assert cli.NETWORKS == tuple(networks.NETWORKS)
    assert cli.MAGNITUDES == tuple(config.MAGNITUDES)
    assert cli.ARMS == tuple(arms.ARMS)


@pytest.mark.parametrize(("argv0", "program"), [("/home/me/venv/bin/img2vid", "img2vid"),
                                                ("C:\\venv\\Scripts\\img2vid.exe", "img2vid"),
                                                ("/site-packages/img2vid/__main__.py", "python -m img2vid")])
def test_the_usage_line_names_the_program_the_user_typed(monkeypatch, capsys, argv0, program):
    monkeypatch.setattr(sys, "argv", [argv0.replace("\\", "/")])
    with pytest.raises(SystemExit):
        main(["--help"])
    assert capsys.readouterr().out.startswith(f"usage: {program} ")
    with pytest.raises(SystemExit):
        main(["preview", "--genotype", "identity", "--image", "nope.png", "-o", "x.png"])
    assert capsys.readouterr().err.startswith(f"{program} preview: error:")


def test_the_console_script_says_img2vid(tmp_path):
    script = Path(sys.executable).with_name("img2vid")
    if not script.is_file():
        pytest.skip("the img2vid console script is not installed next to this Python")
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: img2vid ")
    done = subprocess.run([sys.executable, "-m", "img2vid", "--help"], capture_output=True, text=True, timeout=120)
    assert done.stdout.startswith("usage: python -m img2vid ")


@pytest.mark.parametrize(("name", "format"), [("clip.jpg", "JPEG"), ("clip.JPEG", "JPEG"), ("clip.tif", "TIFF"),
                                              ("clip.png", "PNG")])
def test_preview_writes_the_format_its_suffix_names(image_file, tmp_path, name, format):
    out = tmp_path / name
    assert main(["preview", "--genotype", "translate_x:0.25", "--image", str(image_file), "-o", str(out)]) == 0
    with PIL.Image.open(out) as written:
        assert written.format == format and written.size == (5 * 24 + 6 * 2, 20 + 2 * 2)


@pytest.mark.parametrize("name", ["clip.xyz", "clip"])
def test_preview_refuses_a_suffix_no_format_has(image_file, tmp_path, capsys, name):
    out = tmp_path / name
    with pytest.raises(SystemExit) as exit_info:
        main(["preview", "--genotype", "identity", "--image", str(image_file), "-o", str(out)])
    assert exit_info.value.code == 2
    assert "PIL writes no picture format with the suffix" in capsys.readouterr().err
    assert not out.exists()


def test_ctrl_c_during_the_demo_exits_130(monkeypatch, tmp_path, capsys):
    import img2vid.experiments

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(img2vid.experiments, "run_benchmark", interrupted)
    try:
        main(["demo", "--quick", "--out", str(tmp_path / "out")])
    except KeyboardInterrupt:  # caught here, so a regression fails this test instead of stopping the session
        pytest.fail("Ctrl-C escaped main() as a traceback")
    except SystemExit as exit_info:
        assert exit_info.code == 130
    else:
        pytest.fail("main() returned after Ctrl-C")
    assert "interrupted" in capsys.readouterr().err


def test_sigterm_during_the_demo_stops_it_as_ctrl_c_does(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text("previous\n")
    code = (
        "import os, signal, sys, time\n"
        "import img2vid.experiments.benchmark as benchmark\n"
        "from img2vid.__main__ import main\n"
        "def half_a_run(config, staging, *args):\n"
        "    (staging / 'results.json').write_text('new\\n')\n"
        "    os.kill(os.getpid(), signal.SIGTERM)  # as `timeout` or a batch scheduler would\n"
        "    time.sleep(60)\n"
        "benchmark._run = half_a_run\n"
        f"sys.exit(main(['demo', '--quick', '--arms', 'baseline', '--out', {str(out)!r}]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 130, done.stderr
    assert "left as it was" in done.stdout and "interrupted" in done.stderr
    assert (out / "results.json").read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
