from pathlib import Path

import pytest

from marketapp.config import load_config


def test_defaults_need_no_server(tmp_path: Path) -> None:
    config = load_config({"instance_path": tmp_path})
    assert config.sqlalchemy_url == f"sqlite:///{tmp_path / 'marketapp.db'}"
    assert config.redis_url == ""
    assert len(config.secret_key.get_secret_value()) == 64
    assert len(config.fernet_keys) == 1


def test_generated_secrets_persist_in_instance_folder(tmp_path: Path) -> None:
    first = load_config({"instance_path": tmp_path})
    second = load_config({"instance_path": tmp_path})
    assert first.secret_key == second.secret_key
    assert first.fernet_keys == second.fernet_keys
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_environment_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARKETAPP_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("MARKETAPP_DATABASE_URL", "postgresql+psycopg://u@h/db")
    monkeypatch.setenv("MARKETAPP_REDIS_URL", "redis://127.0.0.1:6379/3")
    monkeypatch.setenv("MARKETAPP_PUBLIC_URL", "https://app.example.com")
    monkeypatch.setenv("MARKETAPP_CLIENT_SECRET", "s3cr3t")
    config = load_config()
    assert config.instance_path == tmp_path
    assert config.sqlalchemy_url == "postgresql+psycopg://u@h/db"
    assert config.redis_url == "redis://127.0.0.1:6379/3"
    assert config.public_url == "https://app.example.com"
    assert "s3cr3t" not in repr(config)


def test_bad_setting_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARKETAPP_JOBS_WORKERS", "many")
    with pytest.raises(ValueError, match="jobs_workers"):
        load_config({"instance_path": tmp_path})


def test_an_instance_run_with_the_emulator_is_followed_by_other_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`marketapp run --devportal` leaves devportal.env; a CLI command on that instance (a second
    terminal) talks to the same emulator; the environment and explicit overrides still win."""
    from marketapp.config import write_devportal_env

    write_devportal_env(
        tmp_path,
        {
            "MARKETAPP_OAUTH_HOSTS": "127.0.0.1:8100",
            "MARKETAPP_ALLOW_INSECURE_LOOPBACK": "true",
            "MARKETAPP_CLIENT_SECRET": "dev-secret",
            "MARKETAPP_PUBLIC_URL": "http://127.0.0.1:8000",
        },
    )
    assert (tmp_path / "devportal.env").stat().st_mode & 0o077 == 0
    monkeypatch.setenv("MARKETAPP_PUBLIC_URL", "http://127.0.0.1:9000")
    config = load_config({"instance_path": tmp_path, "client_secret": "explicit"})
    assert config.oauth_hosts == "127.0.0.1:8100"
    assert config.allow_insecure_loopback is True
    assert config.public_url == "http://127.0.0.1:9000"
    assert config.client_secret.get_secret_value() == "explicit"
    assert load_config({"instance_path": tmp_path / "other"}).allow_insecure_loopback is False
