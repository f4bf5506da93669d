import pytest
import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def dtype(request) -> torch.dtype:
    return request.param


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a minute (e.g. Inductor compiles); -m 'not slow'")


@pytest.fixture
def one_thread():
    """One intra-op thread, for tests of tiny tensors (gradcheck, 32x32 models): on a busy 2-core
    machine extra threads only add contention (50 ms instead of 0.5 ms per tiny GSF forward; the
    temporalize/wrap/deploy tests take 75 s instead of 325 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    """Tests marked slow run with --run-slow or when selected by -m (e.g. -m slow)."""
    if config.getoption("--run-slow") or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow or -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def run_in_onnxruntime():
    """``run(model, clip)``: export ``model`` with the dynamo ONNX exporter and run it in onnxruntime (CPU,
    one thread); skips when onnx, onnxscript or onnxruntime is missing."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")

    def run(model, clip):
        program = torch.onnx.export(model, (clip,), dynamo=True, verbose=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(program.model_proto.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        (out,) = session.run(None, {session.get_inputs()[0].name: clip.numpy()})
        return torch.from_numpy(out)

    return run
