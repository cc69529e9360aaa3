import json

import pytest

from ranking_gateway.core.errors import CliError
from ranking_gateway.learning.state import STATE_FILE, LearnState, workdir_lock


def test_a_new_workdir_has_no_cursor_and_the_state_round_trips(tmp_path):
    state = LearnState.load(tmp_path)
    assert state.cursor_ts is None and state.next_round == 1 and state.next_version == 1 and state.deployed is None
    state.cursor_ts = 1234.5
    state.runs.append({"round": 1, "verdict": "deploy", "version": 1})
    state.versions.append({"version": 1, "weights": "weights/weights-v0001.json"})
    state.save()
    again = LearnState.load(tmp_path)
    assert again.cursor_ts == 1234.5 and again.next_round == 2 and again.next_version == 2
    assert again.deployed == {"version": 1, "weights": "weights/weights-v0001.json"}
    assert not list(tmp_path.glob("*.tmp"))


def test_a_damaged_state_file_is_one_line(tmp_path):
    (tmp_path / STATE_FILE).write_text("{not json")
    with pytest.raises(CliError, match="not a learner state file"):
        LearnState.load(tmp_path)
    (tmp_path / STATE_FILE).write_text(json.dumps({"format": 99}))
    with pytest.raises(CliError, match="unknown format"):
        LearnState.load(tmp_path)


def test_two_rounds_cannot_hold_one_workdir(tmp_path):
    with workdir_lock(tmp_path):
        with pytest.raises(CliError, match="another `learn` round"):
            with workdir_lock(tmp_path):
                pass
    with workdir_lock(tmp_path):  # released
        pass
