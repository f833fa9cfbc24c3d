"""The rejections log: one writer and one reader, shared by generation and evidence."""

import json

from genaug.cache import REJECTIONS_LOG, RejectionLog, read_rejections


def test_the_log_reads_back_what_was_appended_once_per_id_and_attempt(tmp_path):
    log = RejectionLog(tmp_path)
    first = {"id": "a-0", "class": "a", "attempt": 1, "exhausted": False}
    log.append(first)
    log.append({"id": "a-0", "class": "a", "attempt": 2, "exhausted": True})
    log.append(dict(first, seed=9))  # a resumed run logs the attempt again
    log.close()
    with open(tmp_path / REJECTIONS_LOG, "a") as handle:
        handle.write('{"id": "a-1", "attem')  # torn by a crash
    entries = read_rejections(tmp_path)
    assert [(e["id"], e["attempt"]) for e in entries] == [("a-0", 1), ("a-0", 2)]
    assert "seed" not in entries[0]
    reopened = RejectionLog(tmp_path)
    assert reopened.entries == entries
    reopened.append({"id": "a-1", "class": "a", "attempt": 1})
    reopened.close()
    lines = (tmp_path / REJECTIONS_LOG).read_text().splitlines()
    assert json.loads(lines[-1])["id"] == "a-1"  # the torn line was closed first


def test_a_cache_without_a_log_has_no_rejections(tmp_path):
    assert read_rejections(tmp_path) == []
    assert RejectionLog(tmp_path).entries == []
