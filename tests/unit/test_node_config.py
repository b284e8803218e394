"""node.toml: schedules, metrics, logging and grace survive every rewrite (`peer add`
loads and saves the file), and bad values are configuration errors up front."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.config import PeerConfig, load_config, save_config
from protocol.errors import ConfigError

MINIMAL = 'lab = "lab-a"\nlisten = "127.0.0.1:0"\n'


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "node.toml").write_text(text)
    return tmp_path


def test_defaults_for_an_old_node_toml(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL + '[[peers]]\nlab = "lab-b"\naddress = "h:1"\n'))
    assert cfg.schedule.enabled and cfg.schedule.max_concurrent_rounds == 2
    assert cfg.metrics_listen is None and cfg.log_format == "json"
    assert not cfg.peers[0].scheduled and cfg.peers[0].mode == "reveal"


def test_everything_survives_a_save_and_load(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL))
    cfg.peers = [
        PeerConfig("lab-b", "h:1", interval_seconds=600.0),
        PeerConfig("lab-c", "h:2", cron="*/5 * * * *", mode="count", kinds=["email"]),
    ]
    cfg.schedule.jitter_seconds = 1.5
    cfg.schedule.retry_max_seconds = 99.0
    cfg.metrics_listen = "127.0.0.1:9464"
    cfg.log_format = "text"
    cfg.grace_seconds = 3.0
    save_config(cfg)
    again = load_config(tmp_path)
    assert again.peers == cfg.peers
    assert again.schedule == cfg.schedule
    assert (again.metrics_listen, again.log_format, again.grace_seconds) == (
        "127.0.0.1:9464",
        "text",
        3.0,
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('[[peers]]\nlab = "lab-b"\naddress = "h:1"\ncron = "61 * * * *"\n', "cron"),
        ('[[peers]]\nlab = "lab-b"\naddress = "h:1"\ninterval_seconds = 0\n', "interval_seconds"),
        ('[[peers]]\nlab = "lab-b"\naddress = "h:1"\nmode = "all"\n', "mode"),
        ('[logging]\nformat = "xml"\n', "logging.format"),
        ("[schedule]\nmax_concurrent_rounds = 0\n", "max_concurrent_rounds"),
        ('[metrics]\nlisten = "nowhere"\n', "HOST:PORT"),
    ],
)
def test_bad_settings_are_config_errors(tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, MINIMAL + extra))


def test_tables_other_components_own_survive_a_rewrite(tmp_path):
    text = MINIMAL + (
        '[ui]\nlisten = "127.0.0.1:8800"\n\n[[hooks]]\nname = "soc"\n'
        'url = "http://127.0.0.1:1/"\nsecret_file = "keys/soc.secret"\non = ["confirmed"]\n'
    )
    cfg = load_config(write(tmp_path, text))
    cfg.peers = [PeerConfig("lab-b", "h:1")]
    save_config(cfg)
    again = load_config(tmp_path)
    assert again.extra["ui"] == {"listen": "127.0.0.1:8800"}
    assert again.extra["hooks"][0]["name"] == "soc" and again.peers[0].lab == "lab-b"
