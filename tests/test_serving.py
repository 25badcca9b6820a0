"""Serving: the model repository and its configs, the embedded TF-Serving-compatible gRPC server,
the client and the gRPC pipeline backend (against the in-process pipeline).

One repository of tiny models is exported once (through the CLI) and one server serves it for the
whole module; the layout models are hand-set ink-density nets (see test_paragraph.py), so pages
have real lines to recognise.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from htr_tf.errors import ConfigError, DataError, ModelError
from test_paragraph import draw_form, ink_model

tf = pytest.importorskip("tensorflow")
grpc = pytest.importorskip("grpc")
pytest.importorskip("tensorflow_serving.apis")

from htr_tf.serving.repository import (BATCHING_CONFIG_TEXT, BATCHING_PARAMS_FILE, MONITORING_CONFIG_TEXT,  # noqa: E402
                                       ModelEntry, aspired_versions, check_repository, models_config_text,
                                       parse_batching_config, parse_models_config, parse_monitoring_config,
                                       write_repository)

ROOT = Path(__file__).resolve().parents[1]


# -- fixtures ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bundles(tiny_recognizer_dir, tmp_path_factory):
    """Bundle directories: the tiny recogniser and hand-set paragraph / line models."""
    from htr_tf.models.layout_common import FCNConfig
    from htr_tf.models.lines import LineDetector, LineDetectorConfig
    from htr_tf.models.paragraph import ParagraphConfig, ParagraphModel

    d = tmp_path_factory.mktemp("bundles")
    pcfg = ParagraphConfig(input_height=128, input_width=96, fcn=FCNConfig(filters=(4, 8), out_stride=2))
    ParagraphModel(ink_model(128, 96, 2, (5, 5)), pcfg).save(d / "paragraph")
    lcfg = LineDetectorConfig(input_width=256, max_input_height=512, fcn=FCNConfig(filters=(4, 8)))
    LineDetector(ink_model(None, 256, 2, (3, 15), threshold=0.1), lcfg).save(d / "lines")
    return {"recognizer": Path(tiny_recognizer_dir), "paragraph": d / "paragraph", "lines": d / "lines"}


@pytest.fixture(scope="module")
def repo(bundles, tmp_path_factory):
    from htr_tf.cli import main

    out = tmp_path_factory.mktemp("serving") / "repo"
    assert main(["export", "repository", "--out", str(out), *(f"--{k}={v}" for k, v in bundles.items())]) == 0
    return out


@pytest.fixture(scope="module")
def local(bundles):
    from htr_tf.pipeline import LocalBackend

    return LocalBackend.load(bundles["recognizer"], bundles["paragraph"], bundles["lines"])


@pytest.fixture(scope="module")
def server(repo):
    from htr_tf.serving import serve

    srv = serve(repo, port=0, poll_seconds=0.1, max_concurrent=2, max_queue=2)
    yield srv
    srv.stop(0)


@pytest.fixture(scope="module")
def client(server):
    from htr_tf.serving import Client

    with Client(server.address, timeout=30, retries=0) as c:
        yield c


@pytest.fixture(scope="module")
def stub(server):
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    channel = grpc.insecure_channel(server.address)
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel)
    channel.close()


@pytest.fixture(scope="module")
def pages():
    return [draw_form(seed)[0] for seed in (0, 1, 2)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def predict_request(model, signature, inputs, **spec):
    from tensorflow_serving.apis import predict_pb2

    from htr_tf.serving.tensors import to_tensor_proto

    req = predict_pb2.PredictRequest()
    req.model_spec.name = model
    req.model_spec.signature_name = signature
    for k, v in spec.items():
        if k == "version":
            req.model_spec.version.value = v
        elif k == "output_filter":
            req.output_filter.extend(v)
    for k, v in inputs.items():
        req.inputs[k].CopyFrom(to_tensor_proto(v))
    return req


def line_batch_inputs(geometry, n=2, width=48):
    images = np.full((n, geometry.height, width), 255, np.uint8)
    images[:, 8:-8, 4:width - 4] = 40
    return {"images": images, "widths": np.full(n, width, np.int32)}


# -- repository and configs ----------------------------------------------------------------------------
def test_repository_layout_and_configs(repo):
    entries = check_repository(repo)
    assert [e.name for e in entries] == ["recognizer", "paragraph", "lines"]
    for e in entries:
        assert (repo / e.name / "1" / "saved_model.pb").is_file() and e.policy == ("latest", 1)
    assert not [p for p in repo.rglob(".*")]                     # no staging directories left
    config = parse_models_config((repo / "models.config").read_text())
    assert {c.name: c.base_path for c in config.model_config_list.config} == {
        n: f"/models/{n}" for n in ("recognizer", "paragraph", "lines")}
    batching = parse_batching_config((repo / "batching.config").read_text())
    assert batching.pad_variable_length_inputs and batching.max_batch_size.value == 64
    assert parse_monitoring_config((repo / "monitoring.config").read_text()).prometheus_config.enable
    # batching only for the recogniser: the layout signatures take one page without a batch dimension
    per_model = parse_batching_config((repo / "recognizer" / "1" / BATCHING_PARAMS_FILE).read_text())
    assert per_model == batching
    assert not (repo / "paragraph" / "1" / BATCHING_PARAMS_FILE).exists()
    assert not (repo / "lines" / "1" / BATCHING_PARAMS_FILE).exists()


def test_committed_configs_are_the_generated_ones():
    texts = {"models.config": models_config_text(), "batching.config": BATCHING_CONFIG_TEXT,
             "monitoring.config": MONITORING_CONFIG_TEXT}
    for name, text in texts.items():
        assert (ROOT / "serving" / name).read_text() == text, f"serving/{name} differs from repository.py"
    docker = (ROOT / "Dockerfile.serving").read_text()
    for flag in ("--model_config_file=/models/models.config", "--enable_batching=true",
                 "--enable_per_model_batching_parameters=true", "--batching_parameters_file=/models/batching.config",
                 "--monitoring_config_file=/models/monitoring.config", "--port=8500", "--rest_api_port=8501"):
        assert flag in docker
    assert "tensorflow/serving:${TF_SERVING_VERSION}" in docker and "TF_SERVING_VERSION=2.21.0" in docker


def test_config_errors_and_version_policies(repo):
    with pytest.raises(ConfigError, match="not a valid ModelServerConfig"):
        parse_models_config("model_config_list { config { nme: 'x' } }")
    with pytest.raises(ConfigError, match="name and a base_path"):
        parse_models_config("model_config_list { config { name: 'x' } }")
    with pytest.raises(ConfigError, match="twice"):
        parse_models_config("model_config_list { config { name: 'x' base_path: '/a' } "
                            "config { name: 'x' base_path: '/b' } }")
    with pytest.raises(ConfigError, match="allowed_batch_sizes"):
        parse_batching_config("max_batch_size { value: 8 } allowed_batch_sizes: 4")
    with pytest.raises(ConfigError, match="exists"):
        write_repository(repo, version=1, models=["paragraph"])
    with pytest.raises(ConfigError, match="unknown models"):
        write_repository(repo, models=["ocr"])
    e = ModelEntry("m", repo)
    assert aspired_versions(e, [1, 3, 2]) == [3]
    assert aspired_versions(ModelEntry("m", repo, ("latest", 2)), [1, 3, 2]) == [2, 3]
    assert aspired_versions(ModelEntry("m", repo, ("all",)), [2, 1]) == [1, 2]
    assert aspired_versions(ModelEntry("m", repo, ("specific", (1, 5))), [1, 2]) == [1]


def test_tensor_protos_round_trip_and_interoperate():
    from htr_tf.serving.tensors import from_tensor_proto, to_tensor_proto

    values = [np.arange(24, dtype=np.uint8).reshape(2, 3, 4), np.array([1.5, -2], np.float32),
              np.array(7, np.int32), np.array([[True, False]]), np.zeros((0, 4), np.float32),
              np.array([b"a", "\u00e9".encode()], object), np.array([3, 4], np.int64), np.float16([0.5, 2])]
    for v in values:
        p = to_tensor_proto(v)
        for back in (from_tensor_proto(p), tf.make_ndarray(p)):
            assert back.shape == v.shape and (back.dtype == v.dtype or v.dtype == object)
            assert back.tolist() == v.tolist()
        assert from_tensor_proto(tf.make_tensor_proto(v)).tolist() == v.tolist()
    # typed value fields as other clients send them; a short list repeats its last value
    p = tf.make_tensor_proto([1.0, 2.0, 3.0], tf.float32)
    p.ClearField("tensor_content")
    p.float_val.extend([1.0, 2.0])
    assert from_tensor_proto(p).tolist() == [1.0, 2.0, 2.0]
    bad = to_tensor_proto(np.zeros((2, 2), np.float32))
    bad.tensor_content = bad.tensor_content[:-1]
    with pytest.raises(DataError, match="bytes of content"):
        from_tensor_proto(bad, "images")


# -- the server and the client -------------------------------------------------------------------------
def test_metadata_lists_the_signatures_and_status(client):
    sigs = client.signatures("recognizer")
    assert {"serving_default", "recognize", "recognize_bytes", "metadata", "metadata_batch"} <= set(sigs)
    assert sigs["recognize"]["inputs"]["images"] == {"dtype": "uint8", "shape": [-1, 32, -1]}
    assert sigs["recognize"]["inputs"]["widths"]["dtype"] == "int32"
    assert {"log_probs", "lengths", "text", "confidence"} == set(sigs["recognize"]["outputs"])
    assert {"detect", "mask", "serving_default", "metadata"} <= set(client.signatures("paragraph"))
    # the layout networks alone, on the inputs the client's numpy preprocessing makes
    assert client.signatures("paragraph")["mask"]["inputs"]["images"] == {"dtype": "uint8", "shape": [-1, 128, 96]}
    assert client.signatures("lines")["mask"]["inputs"]["images"] == {"dtype": "uint8", "shape": [-1, -1, 256]}
    assert sigs_in(client, "lines") >= {"detect", "detect_page", "mask", "metadata"}
    version, defs = client.model_metadata("lines")
    assert version == 1 and defs["detect"].method_name == "tensorflow/serving/predict"
    assert client.model_status("recognizer") == [{"version": 1, "state": "AVAILABLE", "error_code": 0,
                                                  "error_message": ""}]
    with pytest.raises(ModelError, match="Could not find any versions of model nope"):
        client.model_status("nope")


def sigs_in(client, model):
    return set(client.signatures(model))


def test_grpc_pipeline_gives_the_in_process_text_and_boxes(server, local, pages):
    from htr_tf.pipeline import Pipeline, make_backend

    backend = make_backend("grpc", address=server.address)
    assert backend.charset == local.charset and backend.geometry == local.geometry
    assert backend.width_downsample == local.width_downsample and backend.recognizer_version == 1
    n_lines = 0
    for decoder in ("greedy", "beam"):
        for page in pages if decoder == "greedy" else pages[:1]:
            ref = Pipeline(local, decoder).run(page)
            got = Pipeline(backend, decoder).run(page)
            ref_lines = [ln for r in ref.regions for ln in r.lines]
            got_lines = [ln for r in got.regions for ln in r.lines]
            assert len(got_lines) == len(ref_lines)
            n_lines += len(got_lines)
            assert got.text == ref.text
            # the client resizes and post-processes with the in-process code: the same boxes
            np.testing.assert_allclose([ln.box for ln in got_lines], [ln.box for ln in ref_lines], atol=0.5)
            np.testing.assert_allclose(got.regions[0].box, ref.regions[0].box, atol=0.5)
    assert n_lines >= 10                                # real lines were found and recognised
    # line images: the recogniser alone over gRPC reads them as in process
    from htr_tf.recognize import recognize_crops

    crops = [page[int(b[1]):int(b[3]), int(b[0]):int(b[2])] for page in pages[:1]
             for b in local.find_lines(page, None)[0]]
    only = make_backend("grpc", address=server.address, recognizer_only=True)
    assert only.paragraph is None and only.lines is None
    assert [d.text for d in recognize_crops(only, crops, "greedy")] == \
        [d.text for d in recognize_crops(local, crops, "greedy")]
    # ... and so does `htr ocr --level line --server`
    import tempfile

    from htr_tf.cli import main
    from htr_tf.fileio import write_png

    with tempfile.TemporaryDirectory() as d:
        paths = [str(Path(d) / f"l{i}.png") for i in range(len(crops))]
        for p, c in zip(paths, crops):
            write_png(p, np.ascontiguousarray(c))
        import io
        from contextlib import redirect_stdout

        buf = io.StringIO()
        with redirect_stdout(buf):
            assert main(["ocr", "--level", "line", "--decoder", "greedy", "--server", server.address, *paths]) == 0
        assert buf.getvalue().split("\n")[:-1] == [d.text for d in recognize_crops(local, crops, "greedy")]
    # the log-probabilities themselves, over gRPC and in process
    inputs = line_batch_inputs(local.geometry, 3)
    lp, lengths = backend.log_probs(inputs["images"], inputs["widths"])
    ref_lp, ref_lengths = local.log_probs(inputs["images"], inputs["widths"])
    np.testing.assert_array_equal(lengths, ref_lengths)
    np.testing.assert_allclose(lp, ref_lp, atol=1e-4)
    # without the handwritten-area model the whole page is the area, as in process
    no_area = make_backend("grpc", address=server.address, use_paragraph=False)
    assert no_area.find_area(pages[0])[0].tolist() == [0, 0, pages[0].shape[1], pages[0].shape[0]]
    np.testing.assert_allclose(no_area.find_lines(pages[0], None)[0], local.find_lines(pages[0], None)[0], atol=1.0)


def test_bad_requests_get_invalid_argument_and_the_server_keeps_serving(stub, client, local):
    good = line_batch_inputs(local.geometry)
    H = local.geometry.height
    cases = {
        "wrong input name": {"pictures": good["images"], "widths": good["widths"]},
        "missing input": {"images": good["images"]},
        "wrong dtype": {"images": good["images"].astype(np.float32), "widths": good["widths"]},
        "wrong rank": {"images": good["images"][0], "widths": good["widths"]},
        "wrong height": {"images": np.zeros((2, H + 1, 40), np.uint8), "widths": good["widths"]},
        "width dtype": {"images": good["images"], "widths": good["widths"].astype(np.int64)},
    }
    for what, inputs in cases.items():
        with pytest.raises(grpc.RpcError) as e:
            stub.Predict(predict_request("recognizer", "recognize", inputs), timeout=30)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, what
        assert "signature" in e.value.details() or "input" in e.value.details(), what
    with pytest.raises(grpc.RpcError) as e:
        stub.Predict(predict_request("recognizer", "recognize", good, output_filter=["text", "nope"]), timeout=30)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "nope" in e.value.details()
    # TF Serving's codes for a model or signature that is not there
    with pytest.raises(grpc.RpcError) as e:
        stub.Predict(predict_request("nope", "recognize", good), timeout=30)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND and "nope" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        stub.Predict(predict_request("recognizer", "transcribe", good), timeout=30)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION and '"transcribe" not found' in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        stub.Predict(predict_request("recognizer", "recognize", good, version=7), timeout=30)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND and "Specific(recognizer, 7)" in e.value.details()
    # the client turns them into one-line errors
    with pytest.raises(DataError, match="input 'images' of signature 'recognize' must be uint8, got float32"):
        client.predict("recognizer", cases["wrong dtype"], "recognize")
    with pytest.raises(ModelError, match="Servable not found"):
        client.predict("nope", good, "recognize")
    # and the server still answers
    out = client.predict("recognizer", good, "recognize", output_filter=["text", "lengths"])
    assert set(out) == {"text", "lengths"} and out.version == 1 and out.signature == "recognize"
    assert out["lengths"].tolist() == [48 // local.width_downsample] * 2


def block_model(monkeypatch, server, name):
    """Make ``name``'s served version wait on an event in ``run``; returns (event, number running)."""
    release, running = threading.Event(), []
    servable = server.manager.resolve(_spec(name))
    original = servable.run

    def run(signature, inputs):
        running.append(1)
        release.wait(30)
        return original(signature, inputs)

    monkeypatch.setattr(servable, "run", run)
    return release, running


def _spec(name):
    from tensorflow_serving.apis import model_pb2

    return model_pb2.ModelSpec(name=name)


def wait_for(cond, timeout=20.0, what="condition"):
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_overload_gets_resource_exhausted_and_deadlines_hold(monkeypatch, server, stub, client, local):
    from htr_tf.serving import Client, ServingError

    good = line_batch_inputs(local.geometry)
    release, running = block_model(monkeypatch, server, "recognizer")
    request = predict_request("recognizer", "recognize", good)
    try:
        # 2 run (blocked) and 2 wait: the server's whole capacity
        accepted = [stub.Predict.future(request, timeout=30) for _ in range(2)]
        wait_for(lambda: len(running) == 2, what="two running requests")
        accepted += [stub.Predict.future(request, timeout=30) for _ in range(2)]
        time.sleep(0.2)
        with pytest.raises(grpc.RpcError) as e:
            stub.Predict(request, timeout=30)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        with pytest.raises(ServingError, match="overloaded"):
            Client(server.address, retries=1, backoff=0.01).predict("recognizer", good, "recognize")
        # a deadline shorter than the wait ends the call on time
        t = time.monotonic()
        with pytest.raises(grpc.RpcError) as e:
            stub.Predict(request, timeout=0.3)
        assert e.value.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED)
        assert time.monotonic() - t < 5
    finally:
        release.set()
    for f in accepted:
        assert f.result(timeout=30).model_spec.version.value == 1


def test_waiting_request_past_its_deadline_is_not_run(monkeypatch, server, stub, local):
    good = line_batch_inputs(local.geometry)
    release, running = block_model(monkeypatch, server, "recognizer")
    request = predict_request("recognizer", "recognize", good)
    try:
        blockers = [stub.Predict.future(request, timeout=30) for _ in range(2)]
        wait_for(lambda: len(running) == 2, what="two running requests")
        late = stub.Predict.future(request, timeout=0.2)     # waits for a worker, past its deadline
        with pytest.raises(grpc.RpcError) as e:
            late.result(timeout=10)
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        release.set()
    for f in blockers:
        f.result(timeout=30)
    time.sleep(0.2)
    assert len(running) == 2                                 # the late one never reached the model


def test_server_down_or_model_missing_gives_a_clear_error(server):
    from htr_tf.pipeline import make_backend
    from htr_tf.serving import Client, GrpcBackend, ServerUnavailable

    address = f"127.0.0.1:{free_port()}"
    t = time.monotonic()
    with pytest.raises(ServerUnavailable, match=f"no model server answers at {address}.*htr serve"):
        Client(address, retries=2, backoff=0.01).model_status("recognizer")
    assert time.monotonic() - t < 10
    with pytest.raises(ServerUnavailable):
        make_backend("grpc", address=address, retries=0)
    with pytest.raises(ModelError, match="'nope'|Latest\\(nope\\)"):
        GrpcBackend.connect(server.address, recognizer="nope", retries=0)
    with pytest.raises(ModelError, match="is a 'lines' model, expected a recognizer"):
        GrpcBackend.connect(server.address, recognizer="lines", retries=0)
    with pytest.raises(ModelError, match="host:port"):
        Client("localhost")


def test_new_version_is_picked_up_without_dropping_requests(monkeypatch, server, repo, client, local):
    from htr_tf.serving import GrpcBackend

    backend = GrpcBackend.connect(server.address, retries=0)
    assert backend.recognizer_version == 1
    good = line_batch_inputs(local.geometry)
    release, running = block_model(monkeypatch, server, "recognizer")
    results: list = []
    in_flight = threading.Thread(target=lambda: results.append(client.predict("recognizer", good, "recognize")))
    in_flight.start()
    wait_for(lambda: running, what="a request on version 1")
    # a new version appears complete (copied beside, renamed in), as `htr export repository` writes it
    shutil.copytree(repo / "recognizer" / "1", repo / "recognizer" / ".2.tmp")
    (repo / "recognizer" / ".2.tmp").rename(repo / "recognizer" / "2")
    wait_for(lambda: [s["state"] for s in client.model_status("recognizer")] == ["END", "AVAILABLE"],
             what="version 2 to replace version 1")
    release.set()
    in_flight.join(30)
    assert results and results[0].version == 1               # the request on the old version finished
    assert client.predict("recognizer", good, "recognize").version == 2
    # the backend had pinned version 1: it reads version 2's metadata and carries on
    lp, lengths = backend.log_probs(good["images"], good["widths"])
    assert backend.recognizer_version == 2 and lp.shape[0] == 2
    # a broken version does not replace a working one
    (repo / "recognizer" / "3").mkdir()
    (repo / "recognizer" / "3" / "saved_model.pb").write_bytes(b"not a model")
    wait_for(lambda: any(s["version"] == 3 and s["error_message"] for s in client.model_status("recognizer")),
             what="version 3 to fail")
    status = {s["version"]: s for s in client.model_status("recognizer")}
    assert status[2]["state"] == "AVAILABLE" and status[3]["state"] == "END" and status[3]["error_code"] != 0
    assert client.predict("recognizer", good, "recognize").version == 2


# -- start-up, TLS, CLI -----------------------------------------------------------------------------------
def test_start_errors(repo, server, tmp_path):
    from htr_tf.serving import serve
    from htr_tf.serving.server import ServerOptions

    with pytest.raises(ConfigError, match="no such model repository"):
        serve(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    shutil.copy(repo / "models.config", tmp_path / "empty" / "models.config")
    with pytest.raises(ModelError, match="nothing to serve for recognizer, paragraph, lines"):
        serve(tmp_path / "empty", port=0)
    with pytest.raises(ConfigError, match="both a certificate and a key"):
        ServerOptions(tls_cert="cert.pem")
    only_lines = tmp_path / "lines.config"
    only_lines.write_text(models_config_text(["lines"]))
    with pytest.raises(ConfigError, match="cannot listen"):
        serve(repo, only_lines, port=server.port)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls(repo, tmp_path):
    from htr_tf.serving import Client, ServerUnavailable, serve

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    only_lines = tmp_path / "lines.config"
    only_lines.write_text(models_config_text(["lines"]))
    srv = serve(repo, only_lines, port=0, tls_cert=str(cert), tls_key=str(key))
    try:
        with Client(f"localhost:{srv.port}", root_certificates=cert, retries=0) as c:
            assert c.model_status("lines")[0]["state"] == "AVAILABLE"
        with pytest.raises(ServerUnavailable):                # plain text to a TLS port
            Client(f"localhost:{srv.port}", retries=0).model_status("lines")
    finally:
        srv.stop(0)


def test_cli_serve_arguments():
    from htr_tf.cli import build_parser

    a = build_parser().parse_args(["serve", "--repository", "REPO", "--port", "0", "--max-queue", "0"])
    assert (a.repository, a.host, a.port, a.max_concurrent, a.max_queue) == ("REPO", "127.0.0.1", 0, 4, 0)
    assert a.func.__module__ == "htr_tf.commands.serve"
    a = build_parser().parse_args(["export", "repository", "--out", "R", "--models", "recognizer", "--version", "3"])
    assert (a.out, a.models, a.version, a.recognizer) == ("R", "recognizer", 3, None)


def test_metadata_json_is_the_bundles(client, bundles):
    out = client.predict("recognizer", {"rows": np.zeros(3, np.int32)}, "metadata_batch")
    assert out["json"].shape == (3,)
    meta = json.loads(out["json"][0])
    assert meta == json.loads((bundles["recognizer"] / "htr.json").read_text())
    assert json.loads(client.predict("recognizer", {}, "metadata")["json"].item()) == meta


def test_sigterm_lets_running_requests_finish(monkeypatch, repo, tmp_path):
    import os
    import signal

    from htr_tf.serving import Client, ServerUnavailable, serve
    from htr_tf.serving.server import run_until_signalled, stop_signals

    only_lines = tmp_path / "lines.config"
    only_lines.write_text(models_config_text(["lines"]))
    stop, restore = stop_signals()
    srv = serve(repo, only_lines, port=0, grace_seconds=20)
    release, running = block_model(monkeypatch, srv, "lines")
    page = draw_form(0)[0]
    results: list = []
    client = Client(srv.address, retries=0)
    in_flight = threading.Thread(target=lambda: results.append(
        client.predict("lines", {"image": page}, "detect_page")))
    in_flight.start()
    wait_for(lambda: running, what="a running request")
    try:
        os.kill(os.getpid(), signal.SIGTERM)                 # handled: sets the event, does not kill pytest
        threading.Timer(0.5, release.set).start()
        assert run_until_signalled(srv, stop) == 0          # returns once the running request is done
    finally:
        restore()
        release.set()
    in_flight.join(10)
    assert results and results[0]["boxes"].shape[1] == 4
    with pytest.raises(ServerUnavailable):
        Client(srv.address, retries=0).model_status("lines")
    client.close()
