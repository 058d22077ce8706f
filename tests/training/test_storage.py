"""ObjectStore against a real S3 server (moto's server mode on loopback)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from training.store.bucket import ENV_VARS, ObjectStore, StorageConfigError, StorageError, StorageSettings


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_missing_env_lists_every_missing_name_and_no_values():
    env = {"B2_KEY_ID": "id-secret-value", "B2_APP_KEY": "app-secret-value", "B2_BUCKET": "b"}
    with pytest.raises(StorageConfigError) as info:
        StorageSettings.from_env(env)
    message = str(info.value)
    assert "missing B2_S3_ENDPOINT" in message
    assert "B2_S3_REGION" not in message  # optional: read from a Backblaze endpoint's host
    assert "id-secret-value" not in message and "app-secret-value" not in message


@pytest.mark.parametrize("endpoint", ["ftp://s3.example.com", "s3 us-west-004", "https://", "https://host/path"])
def test_endpoint_must_be_a_host_or_url(endpoint):
    env = {name: "x" for name in ENV_VARS} | {"B2_S3_ENDPOINT": endpoint}
    with pytest.raises(StorageConfigError, match="B2_S3_ENDPOINT"):
        StorageSettings.from_env(env)


def test_region_comes_from_a_backblaze_endpoint():
    env = {name: "x" for name in ENV_VARS} | {"B2_S3_ENDPOINT": "s3.us-west-004.backblazeb2.com", "B2_S3_REGION": ""}
    settings = StorageSettings.from_env(env)
    assert settings.endpoint == "https://s3.us-west-004.backblazeb2.com" and settings.region == "us-west-004"


def test_settings_repr_hides_credentials(b2_env):
    text = repr(StorageSettings.from_env(b2_env))
    assert b2_env["B2_KEY_ID"] not in text and b2_env["B2_APP_KEY"] not in text
    assert b2_env["B2_BUCKET"] in text


def test_upload_download_roundtrip_with_sha256_metadata(b2_env, tmp_path):
    store = ObjectStore.from_env(b2_env)
    source = _write(tmp_path / "src" / "a.bin", os.urandom(4096))
    store.upload_file(source, "runs/a.bin")
    assert store.exists("runs/a.bin") and not store.exists("runs/missing.bin")
    assert [(o.key, o.size) for o in store.list("runs/")] == [("runs/a.bin", 4096)]
    target = store.download_file("runs/a.bin", tmp_path / "dst" / "a.bin")
    assert target.read_bytes() == source.read_bytes()
    assert not list((tmp_path / "dst").glob(".*")), "no temporary files left behind"


def test_uploads_send_no_checksum_headers_b2_rejects(b2_env, tmp_path):
    store = ObjectStore.from_env(b2_env)
    seen: list[str] = []
    store.client.meta.events.register(
        "before-send.s3.PutObject", lambda request, **_: seen.extend(k.lower() for k in request.headers)
    )
    store.upload_file(_write(tmp_path / "x.txt", b"hello"), "x.txt")
    assert seen, "the hook saw the PutObject request"
    assert not [h for h in seen if h.startswith(("x-amz-checksum", "x-amz-sdk-checksum"))]
    assert "x-amz-meta-sha256" in seen


def test_sync_up_then_down_skips_identical_files(b2_env, tmp_path):
    store = ObjectStore.from_env(b2_env)
    local = tmp_path / "data"
    _write(local / "one.h5", b"1" * 1000)
    _write(local / "sub" / "two.h5", b"2" * 10)
    first = store.sync_up(local, "datasets/burgers")
    assert sorted(first.transferred) == ["one.h5", "sub/two.h5"] and not first.skipped
    second = store.sync_up(local, "datasets/burgers/")
    assert not second.transferred and sorted(second.skipped) == ["one.h5", "sub/two.h5"]
    _write(local / "one.h5", b"3" * 1000)  # same size, different content -> uploaded again
    assert store.sync_up(local, "datasets/burgers").transferred == ("one.h5",)

    down = tmp_path / "down"
    got = store.sync_down("datasets/burgers", down)
    assert sorted(got.transferred) == ["one.h5", "sub/two.h5"]
    assert (down / "one.h5").read_bytes() == b"3" * 1000
    assert store.sync_down("datasets/burgers", down).skipped == ("one.h5", "sub/two.h5")
    (down / "sub" / "two.h5").write_bytes(b"X" * 10)  # locally corrupted, same size
    assert store.sync_down("datasets/burgers", down).transferred == ("sub/two.h5",)
    assert (down / "sub" / "two.h5").read_bytes() == b"2" * 10


def test_download_detects_content_differing_from_recorded_sha256(b2_env, tmp_path):
    store = ObjectStore.from_env(b2_env)
    store.client.put_object(
        Bucket=b2_env["B2_BUCKET"], Key="bad.bin", Body=b"actual", Metadata={"sha256": "0" * 64}
    )
    with pytest.raises(StorageError, match="sha256"):
        store.download_file("bad.bin", tmp_path / "bad.bin")
    assert not (tmp_path / "bad.bin").exists()


def test_errors_name_the_key_and_never_the_credentials(b2_env, tmp_path):
    env = {**b2_env, "B2_BUCKET": "no-such-bucket-here"}
    store = ObjectStore.from_env(env)
    with pytest.raises(StorageError) as info:
        store.upload_file(_write(tmp_path / "f", b"x"), "k/f")
    message = str(info.value)
    assert "no-such-bucket-here/k/f" in message
    assert env["B2_KEY_ID"] not in message and env["B2_APP_KEY"] not in message
    with pytest.raises(StorageError, match="no such object"):
        ObjectStore.from_env(b2_env).download_file("absent", tmp_path / "absent")


def test_unreachable_endpoint_is_a_storage_error(tmp_path):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        "B2_KEY_ID": "kid-secret", "B2_APP_KEY": "app-secret", "B2_S3_ENDPOINT": f"http://127.0.0.1:{port}",
        "B2_S3_REGION": "us-west-004", "B2_BUCKET": "b",
    }
    store = ObjectStore(StorageSettings.from_env(env))
    with pytest.raises(StorageError) as info:
        store.exists("k")
    assert "kid-secret" not in str(info.value) and "app-secret" not in str(info.value)


def test_ignores_aws_profile_config_files_and_ca_variables(b2_env, tmp_path, monkeypatch):
    # Users' machines carry AWS_* settings for other accounts; only B2_* may configure the store.
    monkeypatch.setenv("AWS_PROFILE", "profile-that-does-not-exist")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "missing-config"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "wrong-id")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://192.0.2.1:1")
    monkeypatch.setenv("AWS_CA_BUNDLE", str(tmp_path / "no-such-ca.pem"))  # irrelevant for http://
    store = ObjectStore.from_env(b2_env)
    store.upload_file(_write(tmp_path / "f.txt", b"payload"), "f.txt")
    assert store.download_file("f.txt", tmp_path / "g.txt").read_bytes() == b"payload"
