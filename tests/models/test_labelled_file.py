"""Someone's own labelled posts: the file formats, the label mapping, and the errors that name the row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moodshift.models.datasets.labelled_file import load_labelled_posts


def test_json_lines_with_the_default_mapping(tmp_path: Path) -> None:
    path = tmp_path / "posts.jsonl"
    rows = [{"text": "love it", "label": "POS"}, {"text": "it is a chair", "label": "neutral"},
            {"text": "hate it", "label": " Negative "}, {"text": "love it", "label": "pos"}]
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n\n")
    posts = load_labelled_posts(path)
    assert [(p.text, p.label, p.confidence) for p in posts] == [("love it", 2, 1.0), ("it is a chair", 1, 1.0),
                                                                 ("hate it", 0, 1.0)]


def test_tsv_with_own_fields_and_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "sentiment140.tsv"
    path.write_text("polarity\ttweet\n0\tworst day ever\n4\tbest day ever\n")
    posts = load_labelled_posts(path, text_field="tweet", label_field="polarity",
                                label_map={"0": "negative", "4": "positive"})
    assert [(p.text, p.label) for p in posts] == [("worst day ever", 0), ("best day ever", 2)]


@pytest.mark.parametrize("content, suffix, message", [
    ('{"text": "ok", "label": "pos"}\n{"text": "bad", "label": \n', ".jsonl", "line 2 is not JSON"),
    ('["ok", "pos"]\n', ".jsonl", "line 1 is not a JSON object"),
    ("text,label\nfine,pos\n,neg\n", ".csv", "row 3 has no text"),
    ("text,label\nfine,pos\nbad,\n", ".csv", "row 3 has no label"),
    ("text,label\nfine,pos\nbad,neg\nmeh,3\n", ".csv", r"labels outside the mapping: '3' \(1 row\)"),
    ("text,label\nfine,pos\ngreat,pos\n", ".csv", "at least two labels"),
    ("text,label\n", ".xlsx", "expected .csv, .tsv, .jsonl"),
])
def test_bad_files_are_errors_that_say_where(tmp_path: Path, content: str, suffix: str, message: str) -> None:
    path = tmp_path / f"mine{suffix}"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_labelled_posts(path)


def test_a_mapping_to_an_unknown_label_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("text,label\na,pos\nb,neg\n")
    with pytest.raises(ValueError, match="'joyful' is not one of the model's labels"):
        load_labelled_posts(path, label_map={"5": "joyful"})
