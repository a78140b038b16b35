"""The HTTP server (``seq2seq/serving/``): each route's answers and errors, outputs equal to
``translate``'s, batching, the queue limit, abandoned requests, the API key and a fuzz of the
request body. The app runs in this process on the models of ``tests/fixtures/format2/``."""

from __future__ import annotations

import copy
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the server needs FastAPI and uvicorn (.[serve])")
pytest.importorskip("httpx", reason="the tests talk to the app through httpx (.[dev])")

from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from seq2seq.cli.loading import make_translator  # noqa: E402
from seq2seq.config import compose, help_text  # noqa: E402
from seq2seq.data.tokenizer import file_sha256  # noqa: E402
from seq2seq.errors import UserError  # noqa: E402
from seq2seq.serving.app import create_app  # noqa: E402
from seq2seq.serving.info import describe_model  # noqa: E402
from seq2seq.translate import translate  # noqa: E402

OLD = Path(__file__).resolve().parent / "fixtures" / "format2"
TRANSFORMER = OLD / "transformer" / "checkpoints" / "last.pt"
AVERAGE = OLD / "transformer" / "checkpoints" / "average_last2.pt"
GRU = OLD / "gru" / "checkpoints" / "last.pt"
EXPORT = OLD / "transformer_ct2"
SOURCES = (OLD / "corpus" / "test.de").read_text(encoding="utf-8").splitlines()


def serve_config(checkpoint, *overrides: str):
    return compose("serve", [f"checkpoint={checkpoint}", "num_threads=1", *overrides])


def make_app(checkpoint, *overrides: str, translator_hook=None):
    """The app for ``checkpoint`` and ``overrides`` (and the translator it serves);
    ``translator_hook`` may replace the translator first."""
    cfg = serve_config(checkpoint, *overrides)
    translator, train_config = make_translator(cfg)
    if translator_hook is not None:
        translator = translator_hook(translator)
    return create_app(translator, cfg, describe_model(translator, train_config, cfg)), translator


@pytest.fixture(scope="module")
def client():
    app, _ = make_app(TRANSFORMER)
    with TestClient(app) as c:
        yield c


def translate_command(checkpoint, tmp_path, *overrides: str) -> tuple[list[str], list[str]]:
    """What ``python -m seq2seq.translate`` writes for SOURCES: the lines and the n-best lines."""
    src = tmp_path / "src.txt"
    src.write_text("\n".join(SOURCES) + "\n", encoding="utf-8")
    out, nbest = tmp_path / "out.txt", tmp_path / "out.nbest"
    args = [f"checkpoint={checkpoint}", f"input={src}", f"output={out}", f"nbest_output={nbest}"]
    translate(compose("translate", [*args, "num_threads=1", *overrides]))
    return out.read_text(encoding="utf-8").splitlines(), nbest.read_text(encoding="utf-8").splitlines()


def nbest_lines(translations: list[dict]) -> list[str]:
    """A response as translate's n-best file: LINE<TAB>SCORE<TAB>TEXT."""
    return [
        f"{i}\t{h['score']:.4f}\t{h['text']}"
        for i, t in enumerate(translations, start=1)
        for h in t.get("nbest", [t])
    ]


CASES = [  # (checkpoint, translate's overrides, the request's options)
    (TRANSFORMER, [], {}),
    (TRANSFORMER, ["decoding=greedy"], {"beam_size": 1}),
    (TRANSFORMER, ["decoding.nbest=3", "decoding.alpha=0.6"], {"nbest": 3, "alpha": 0.6}),
    (TRANSFORMER, ["decoding=sample", "decoding.seed=7"], {"sampling": True, "seed": 7}),
    (GRU, ["decoding.beam_size=3", "decoding.nbest=2"], {"beam_size": 3, "nbest": 2}),
    (f"{TRANSFORMER},{AVERAGE}", [], {}),
    (EXPORT, [], {}),
    (EXPORT, ["decoding.nbest=2"], {"nbest": 2}),
]


@pytest.mark.parametrize("checkpoint, overrides, options", CASES)
def test_a_request_translates_as_the_translate_command_does(tmp_path, checkpoint, overrides, options):
    """Same sentences, same options: the same translations and n-best scores as translate."""
    if checkpoint == EXPORT:
        pytest.importorskip("ctranslate2")
    lines, nbest = translate_command(checkpoint, tmp_path, *overrides)
    app, _ = make_app(checkpoint)
    with TestClient(app) as c:
        r = c.post("/v1/translate", json={"text": SOURCES, "options": options})
        assert r.status_code == 200, r.text
        translations = r.json()["translations"]
        assert [t["text"] for t in translations] == lines
        assert nbest_lines(translations) == nbest


def test_routes_describe_the_model_and_its_health(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    info = client.get("/v1/model").json()
    assert info["architecture"] == "Transformer" and info["engine"] == "torch"
    assert info["parameters"] > 0 and info["languages"] == {"source": "de", "target": "en"}
    assert info["checkpoints"][0]["sha256"] == file_sha256(TRANSFORMER)
    assert info["tokenizer"]["src"]["sha256"] == file_sha256(OLD / "transformer" / "tokenizer" / "spm.model")
    assert info["attention"] == {"layers": 1, "heads": 2}
    assert info["decoding"]["beam_size"] == 5
    schema = client.get("/openapi.json").json()
    assert "/v1/translate" in schema["paths"] and "/v1/model" in schema["paths"]
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "<script>" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing fetched from elsewhere


def test_a_checkpoint_that_carries_its_tokenizer_describes_it(tmp_path):
    from seq2seq.average import average

    alone = tmp_path / "alone.pt"  # an average carries its tokenizer, with no tokenizer/ beside it
    average(compose("average", [f"inputs={TRANSFORMER}", f"output={alone}"]))
    app, _ = make_app(alone)
    with TestClient(app) as c:
        tok = c.get("/v1/model").json()["tokenizer"]
    spm = OLD / "transformer" / "tokenizer" / "spm.model"
    assert tok["joint"] and tok["src"] == tok["tgt"]
    assert tok["src"]["file"] == "spm.model" and tok["src"]["sha256"] == file_sha256(spm)


def test_readyz_says_when_the_server_drains():
    app, _ = make_app(TRANSFORMER)
    with TestClient(app) as c:
        assert c.get("/readyz").status_code == 200
        app.state.draining = True  # what a stop signal sets (serving/server.py)
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json() == {"status": "draining"}
        assert c.get("/healthz").status_code == 200


def test_the_export_and_the_ensemble_describe_themselves():
    pytest.importorskip("ctranslate2")
    app, _ = make_app(EXPORT)
    with TestClient(app) as c:
        info = c.get("/v1/model").json()
        assert info["engine"] == "ctranslate2" and info["attention"] is None
        assert info["checkpoints"][0]["sha256"] == file_sha256(EXPORT / "model.bin")
        r = c.post("/v1/translate", json={"text": "Ein Hund.", "attention": True})
        assert r.status_code == 422 and r.json()["field"] == "attention"
    app, _ = make_app(f"{TRANSFORMER},{AVERAGE}")
    with TestClient(app) as c:
        info = c.get("/v1/model").json()
        assert info["architecture"] == "Ensemble" and info["members"] == ["Transformer", "Transformer"]
        assert [c["sha256"] for c in info["checkpoints"]] == [file_sha256(TRANSFORMER), file_sha256(AVERAGE)]


@pytest.mark.parametrize("checkpoint, grid", [(TRANSFORMER, (1, 2)), (GRU, (1, 1))])
def test_attention_has_one_weight_per_source_and_target_piece(checkpoint, grid):
    app, translator = make_app(checkpoint, "decoding.nbest=2")
    with TestClient(app) as c:
        layers, heads = grid
        for layer, head in [(None, None), (0, None), (-1, heads - 1)]:
            body = {"text": ["Ein Mann fährt Fahrrad.", "Zwei Hunde."], "attention": True}
            body |= {"attention_layer": layer, "attention_head": head}
            r = c.post("/v1/translate", json=body)
            assert r.status_code == 200, r.text
            for sentence, src in zip(r.json()["translations"], body["text"], strict=True):
                assert len(sentence["nbest"]) == 2
                for hyp in sentence["nbest"]:
                    att = hyp["attention"]
                    ids = translator.encode([src])[0]
                    assert att["source"] == translator.tokenizer.src_pieces(ids)
                    assert att["target"][-1] == "</s>" and len(att["weights"]) == len(att["target"])
                    assert all(len(row) == len(att["source"]) for row in att["weights"])
                    assert all(abs(sum(row) - 1) < 1e-3 for row in att["weights"])
        r = c.post("/v1/translate", json={"text": "Hund.", "attention": True, "attention_layer": layers})
        assert r.status_code == 422 and r.json()["field"] == "attention_layer"
        r = c.post("/v1/translate", json={"text": "Hund.", "attention": True, "attention_head": heads})
        assert r.status_code == 422 and r.json()["field"] == "attention_head"


BAD = [  # (body, status, field)
    (b"{not json", 400, "body"),
    (b'{"text": "Ein Hund \xff\xfe rennt."}', 400, "body"),
    (b"", 422, "body"),
    (b"[1, 2]", 422, "body"),
    (b'{"txt": "Ein Hund."}', 422, "txt"),
    (b'{"text": 5}', 422, "text"),
    (b'{"text": ["a", 5]}', 422, "text[1]"),
    (b'{"text": null}', 422, "text"),
    (b'{"text": ""}', 422, "text"),
    (b'{"text": "   "}', 422, "text"),
    (b'{"text": []}', 422, "text"),
    (b'{"text": "\\ud800 Hund"}', 422, "text"),
    (b'{"text": "a", "options": {"length_penalty": "gnmt"}}', 422, "options.length_penalty"),
    (b'{"text": "a", "options": {"patience": -1}}', 422, "options.patience"),
    (b'{"text": "a", "options": {"beam_size": "5"}}', 422, "options.beam_size"),
    (b'{"text": "a", "options": {"beam_size": 0}}', 422, "options.beam_size"),
    (b'{"text": "a", "options": {"beam_size": 1e9}}', 422, "options.beam_size"),
    (b'{"text": "a", "options": {"alpha": NaN}}', 422, "options.alpha"),
    (b'{"text": "a", "options": {"alpha": "1"}}', 422, "options.alpha"),
    (b'{"text": "a", "options": {"nbest": 9}}', 422, "options.nbest"),
    (b'{"text": "a", "options": {"top_p": 0.5}}', 422, "options.top_p"),
    (b'{"text": "a", "options": {"tgt_lang": "fr"}}', 422, "options.tgt_lang"),
    (b'{"text": "a", "options": []}', 422, "options"),
    (b'{"text": "a", "attention": "yes"}', 422, "attention"),
    (b'{"text": "a", "attention_head": 1}', 422, "attention_head"),
    (json.dumps({"text": "Hund " * 20_000}).encode(), 413, "text"),
    (json.dumps({"text": ["Hund."] * 10_000}).encode(), 413, "text"),
    (json.dumps({"text": "x" * 2_000_000}).encode(), 413, "body"),
]


@pytest.mark.parametrize(
    "body, status, field", BAD, ids=[f"{i}-{b[:24]!r}" for i, (b, _, _) in enumerate(BAD)]
)
def test_a_bad_request_is_a_4xx_naming_the_field_and_the_next_is_served(client, body, status, field):
    r = client.post("/v1/translate", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    error = r.json()
    assert error["field"] == field and field.split("[")[0] in error["error"], error
    ok = client.post("/v1/translate", json={"text": "Ein Hund."})
    assert ok.status_code == 200 and ok.json()["translations"][0]["text"]


def test_other_bad_requests_are_json_errors_too(client):
    r = client.get("/v2/translate")
    assert r.status_code == 404 and r.json()["field"] == "path"
    r = client.get("/v1/translate")
    assert r.status_code == 405 and "error" in r.json()
    r = client.post("/v1/translate", content=b'{"text": "a"}', headers={"Content-Type": "text/plain"})
    assert 400 <= r.status_code < 500 and "error" in r.json()


def test_empty_lines_of_a_list_translate_to_empty_lines(client):
    r = client.post("/v1/translate", json={"text": ["", "Ein Hund.", "\t"]})
    texts = [t["text"] for t in r.json()["translations"]]
    assert texts[0] == "" and texts[1] and texts[2] == ""


def test_settings_are_checked_and_listed():
    text = help_text("serve", compose("serve", ["checkpoint=x.pt"], checked=False))
    for key in ("host=127.0.0.1", "port=8000", "max_wait_ms=", "queue_size=", "max_sentences=", "max_chars="):
        assert key in text
    assert "api_key=null" in text and "decoding.beam_size=5" in text
    for bad, key in [
        ("port=70000", "port"),
        ("queue_size=0", "queue_size"),
        ("max_wait_ms=-1", "max_wait_ms"),
    ]:
        with pytest.raises(UserError, match=key):
            serve_config(TRANSFORMER, bad)


class Gate:
    """Wraps a translator so that its decoding waits until ``open`` and every ``decode_all``
    call is recorded (the source ids of each)."""

    def __init__(self):
        self.opened, self.calls = threading.Event(), []

    def __call__(self, translator):
        gated = copy.copy(translator)
        original = translator.decode_all

        def decode_all(ids):
            self.calls.append(list(ids))
            assert self.opened.wait(60)
            return original(ids)

        gated.decode_all = decode_all
        return gated


def wait_until(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_requests_that_arrive_together_are_decoded_in_one_batch():
    """Eight requests sent together (within max_wait_ms) make one decode_all call; each gets
    its own sentence's translation."""
    gate = Gate()
    app, translator = make_app(TRANSFORMER, "max_wait_ms=1500", translator_hook=gate)
    sentences = SOURCES[:8]
    gate.opened.set()
    expected = [translator.tokenizer.decode_tgt(h[0].tokens) for h in translator.hypotheses(sentences)]
    gate.calls.clear()
    with TestClient(app) as c:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda s: c.post("/v1/translate", json={"text": s}), sentences))
        assert [a.json()["translations"][0]["text"] for a in answers] == expected
        assert len(gate.calls) == 1 and len(gate.calls[0]) == 8
        assert app.state.batcher.stats["batches"] == 1 and app.state.batcher.stats["jobs"] == 8


def test_a_full_queue_answers_503_with_retry_after():
    gate = Gate()
    app, _ = make_app(TRANSFORMER, "queue_size=2", "max_wait_ms=0", translator_hook=gate)
    with TestClient(app) as c, ThreadPoolExecutor(3) as pool:
        batcher = app.state.batcher
        first = pool.submit(c.post, "/v1/translate", json={"text": "Ein Hund."})
        wait_until(lambda: len(gate.calls) == 1)  # being decoded, the queue empty again
        queued = [pool.submit(c.post, "/v1/translate", json={"text": s}) for s in SOURCES[:2]]
        wait_until(lambda: len(batcher.queue) == 2)
        refused = c.post("/v1/translate", json={"text": "Eine Katze."})
        assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
        assert "queue_size" in refused.json()["error"]
        assert c.get("/healthz").status_code == 200  # decoding runs off the event loop
        assert c.get("/v1/model").status_code == 200
        gate.opened.set()
        assert all(f.result().status_code == 200 for f in [first, *queued])
        assert c.post("/v1/translate", json={"text": "Eine Katze."}).status_code == 200


def test_a_request_whose_client_went_away_is_dropped_from_the_queue():
    """A request queued behind a batch in progress, abandoned by its client, is never decoded."""
    import uvicorn

    from seq2seq.serving.server import listen

    gate = Gate()
    app, _ = make_app(TRANSFORMER, "max_wait_ms=0", translator_hook=gate)
    sock = listen("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started)
        import httpx

        with ThreadPoolExecutor(1) as pool, httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            first = pool.submit(http.post, "/v1/translate", json={"text": "Ein Hund."}, timeout=60)
            wait_until(lambda: len(gate.calls) == 1)
            body = json.dumps({"text": "Zwei Katzen."}).encode()
            with socket.create_connection(("127.0.0.1", port)) as raw:
                raw.sendall(
                    b"POST /v1/translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                wait_until(lambda: len(app.state.batcher.queue) == 1)
            wait_until(lambda: app.state.batcher.queue[0].future.cancelled())
            gate.opened.set()
            assert first.result().status_code == 200
            wait_until(lambda: app.state.batcher.stats["dropped"] == 1)
            assert http.post("/v1/translate", json={"text": "Eine Katze."}).status_code == 200
            assert len(gate.calls) == 2 and all(len(c) == 1 for c in gate.calls)  # never "Zwei Katzen."
    finally:
        gate.opened.set()
        server.should_exit = True
        thread.join(30)


GUARDED = [
    ("get", "/"),
    ("get", "/readyz"),
    ("get", "/v1/model"),
    ("get", "/docs"),
    ("get", "/openapi.json"),
    ("post", "/v1/translate"),
    ("get", "/nowhere"),
]


@pytest.mark.parametrize("where", ["setting", "environment"])
def test_the_api_key_guards_every_route_but_healthz(monkeypatch, where):
    if where == "environment":
        monkeypatch.setenv("SEQ2SEQ_API_KEY", "s3cret")
        app, _ = make_app(TRANSFORMER)
    else:
        app, _ = make_app(TRANSFORMER, "api_key=s3cret")
    with TestClient(app) as c:
        assert c.get("/healthz").status_code == 200
        for method, path in GUARDED:
            r = getattr(c, method)(path)
            assert r.status_code == 401 and r.json()["field"] == "Authorization", (path, r.text)
            r = getattr(c, method)(path, headers={"Authorization": "Bearer wrong"})
            assert r.status_code == 401, path
        good = c.post("/v1/translate", json={"text": "Ein Hund."}, headers={"Authorization": "Bearer s3cret"})
        assert good.status_code == 200
        assert c.get("/v1/model", headers={"X-API-Key": "s3cret"}).status_code == 200


def request_bodies(schema: dict):
    """Request bodies drawn from the OpenAPI description of ``POST /v1/translate``: its fields
    with values of the declared type or of any other, some left out, sometimes a stray field."""
    components = schema["components"]["schemas"]
    anything = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=8,
    )

    def typed(prop: dict):
        if "$ref" in prop:
            return fields_of(components[prop["$ref"].rsplit("/", 1)[-1]])
        options = [typed(p) for p in prop.get("anyOf", [])]
        kind = prop.get("type")
        low, high = prop.get("minimum", prop.get("exclusiveMinimum")), prop.get("maximum")
        if kind == "integer":
            options.append(st.integers(min_value=low, max_value=high) | st.integers())
        elif kind == "number":
            options.append(st.floats(min_value=low, max_value=high) | st.floats())
        elif kind == "string":
            options.append(st.text(max_size=60))
        elif kind == "boolean":
            options.append(st.booleans())
        elif kind == "array":
            options.append(st.lists(typed(prop.get("items", {})), max_size=5))
        elif kind == "null":
            options.append(st.none())
        return st.one_of(*options) if options else anything

    def fields_of(component: dict):
        props, required = component.get("properties", {}), set(component.get("required", ()))
        declared = st.fixed_dictionaries(
            {n: typed(p) for n, p in props.items() if n in required},
            optional={n: typed(p) for n, p in props.items() if n not in required},
        )
        loose = st.fixed_dictionaries({}, optional={n: typed(p) | anything for n, p in props.items()})
        stray = st.builds(lambda d, k, v: {**d, k: v}, declared, st.text(max_size=8), anything)
        return declared | loose | stray

    ref = schema["paths"]["/v1/translate"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    return fields_of(components[ref["$ref"].rsplit("/", 1)[-1]]) | anything


@pytest.fixture(scope="module")
def small_client():
    """A server on greedy search with small limits, so that each fuzzed request is quick."""
    app, _ = make_app(
        TRANSFORMER, "decoding=greedy", "max_chars=120", "decoding.max_len_b=5", "decoding.max_len_a=0.5"
    )
    with TestClient(app) as c:
        yield c


def test_a_fuzz_of_the_api_from_its_openapi_description_finds_no_5xx(small_client):
    schema = small_client.get("/openapi.json").json()

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(request_bodies(schema))
    def check(body):
        r = small_client.post(
            "/v1/translate", content=json.dumps(body), headers={"Content-Type": "application/json"}
        )
        assert r.status_code < 500, (body, r.text)
        if r.status_code != 200:
            assert r.json()["error"], r.text
        else:
            assert len(r.json()["translations"]) == (
                1 if isinstance(body["text"], str) else len(body["text"])
            )

    check()
