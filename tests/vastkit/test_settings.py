"""Where the client finds its API key (as the vastai CLI does) and its pacing settings."""

from __future__ import annotations

import pytest

from vastkit.errors import VastConfigError
from vastkit.settings import ApiSettings, find_api_key


@pytest.fixture
def home(tmp_path):
    return {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg"), "XDG_CACHE_HOME": str(tmp_path / "cache")}


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_key_comes_from_the_env_then_the_file_vastai_set_api_key_writes_then_the_legacy_file(home, tmp_path):
    assert find_api_key(home) == ("", "")
    _write(tmp_path / ".vast_api_key", "legacy-key\n")
    assert find_api_key(home) == ("legacy-key", str(tmp_path / ".vast_api_key"))
    _write(tmp_path / "cfg" / "vastai" / "vast_api_key", "  cli-key \n")
    assert find_api_key(home) == ("cli-key", str(tmp_path / "cfg" / "vastai" / "vast_api_key"))
    assert find_api_key({**home, "VAST_API_KEY": "env-key"}) == ("env-key", "$VAST_API_KEY")
    settings = ApiSettings.from_env(environ=home)
    assert settings.api_key == "cli-key" and "cli-key" not in repr(settings)
    assert ApiSettings.from_env(api_key="explicit", environ=home).api_key == "explicit"


def test_the_default_config_dir_is_under_home(tmp_path):
    _write(tmp_path / ".config" / "vastai" / "vast_api_key", "k1")
    assert find_api_key({"HOME": str(tmp_path)})[0] == "k1"


def test_no_key_names_vastai_set_api_key_and_the_files_it_looked_at(home, tmp_path):
    with pytest.raises(VastConfigError) as err:
        ApiSettings.from_env(environ=home)
    message = str(err.value)
    assert message.startswith("No Vast.ai API key: set VAST_API_KEY")
    assert "`vastai set api-key KEY`" in message and str(tmp_path / "cfg" / "vastai" / "vast_api_key") in message


def test_an_instance_key_never_falls_back_to_the_account_key_files(home, tmp_path):
    _write(tmp_path / "cfg" / "vastai" / "vast_api_key", "account-key")
    with pytest.raises(VastConfigError, match=r"\$CONTAINER_API_KEY is not set"):
        ApiSettings.from_env(key_var="CONTAINER_API_KEY", environ=home)


def test_pacing_scale_and_directory(home, tmp_path):
    settings = ApiSettings.from_env(api_key="k", environ=home)
    assert settings.pacing_scale == 1.0 and settings.pacing_dir == tmp_path / "cache" / "vastkit" / "pacing"
    scaled = ApiSettings.from_env(api_key="k", environ={**home, "VASTKIT_PACING_SCALE": "0.1",
                                                       "VASTKIT_PACING_DIR": str(tmp_path / "p")})
    assert scaled.pacing_scale == 0.1 and scaled.pacing_dir == tmp_path / "p"
    with pytest.raises(VastConfigError, match="VASTKIT_PACING_SCALE='fast'"):
        ApiSettings.from_env(api_key="k", environ={**home, "VASTKIT_PACING_SCALE": "fast"})
    assert ApiSettings(api_key="k").identity != ApiSettings(api_key="k2").identity
