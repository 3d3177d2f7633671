import pytest

from ivcontrast.classifier.tags import tag_says_contrast, tag_status


@pytest.mark.parametrize(
    ("value", "claimed"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("N", False),
        ("n", False),
        ("NO", False),
        ("None", False),
        ("APPLIED", True),
        ("Omnipaque 350", True),
        ("IV", True),
        ("yes", True),
    ],
)
def test_tag_reading_follows_the_study(value: str | None, claimed: bool | None) -> None:
    assert tag_says_contrast(value) is claimed


def test_tag_status() -> None:
    assert tag_status(None, True) == "missing"
    assert tag_status("IOHEXOL", True) == "agrees"
    assert tag_status("IOHEXOL", False) == "disagrees"
    assert tag_status("NO", False) == "agrees"
