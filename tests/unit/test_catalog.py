"""Loading the matter catalog: the shipped file, and every kind of broken file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hotline_bridge.catalog import (
    CatalogError,
    MatterClass,
    Via,
    default_catalog_path,
    load_catalog,
)
from hotline_bridge.config.settings import BridgeSettings

SHIPPED = default_catalog_path().read_text(encoding="utf-8")


def test_shipped_catalog_loads_with_all_five_classes() -> None:
    catalog = load_catalog()
    assert set(catalog.classes) == set(MatterClass)
    assert catalog.version == 1
    by_class = {
        c: [x for x in catalog.categories.values() if x.matter_class is c] for c in MatterClass
    }
    assert all(by_class.values()), "every class has at least one category"
    assert catalog.classes[MatterClass.POLICE_MATTER].label_zh == "12345转110受理事项"


@pytest.mark.parametrize(
    ("code", "matter_class"),
    [
        # The plan's own examples, class by class.
        ("police.criminal", MatterClass.POLICE_MATTER),
        ("police.public_order", MatterClass.POLICE_MATTER),
        ("police.road_traffic", MatterClass.POLICE_MATTER),
        ("police.mass_incident", MatterClass.POLICE_MATTER),
        ("police.facility_hazard", MatterClass.POLICE_MATTER),
        ("police.disaster_accident", MatterClass.POLICE_MATTER),
        ("police.misconduct", MatterClass.POLICE_MATTER),
        ("police.harassment", MatterClass.POLICE_MATTER),
        ("gov.violation_report", MatterClass.NON_POLICE_MATTER),
        ("gov.complaint_department", MatterClass.NON_POLICE_MATTER),
        ("gov.complaint_public_service", MatterClass.NON_POLICE_MATTER),
        ("dispute.economic", MatterClass.NON_POLICE_MATTER),
        ("dispute.family", MatterClass.NON_POLICE_MATTER),
        ("dispute.neighbour", MatterClass.NON_POLICE_MATTER),
        ("dispute.consumer", MatterClass.NON_POLICE_MATTER),
        ("dispute.labour", MatterClass.NON_POLICE_MATTER),
        ("dispute.homestead", MatterClass.NON_POLICE_MATTER),
        ("help.utilities", MatterClass.NON_POLICE_MATTER),
        ("help.aid_relief", MatterClass.NON_POLICE_MATTER),
        ("help.legal_aid", MatterClass.NON_POLICE_MATTER),
        ("consult.law_policy", MatterClass.NON_POLICE_MATTER),
        ("consult.public_service", MatterClass.NON_POLICE_MATTER),
        ("unclear.overlapping", MatterClass.UNCLEAR_RESPONSIBILITY),
        ("neither.litigation", MatterClass.NEITHER_PLATFORM),
        ("neither.arbitration", MatterClass.NEITHER_PLATFORM),
        ("neither.discipline", MatterClass.NEITHER_PLATFORM),
        ("neither.admin_review", MatterClass.NEITHER_PLATFORM),
        ("neither.info_disclosure", MatterClass.NEITHER_PLATFORM),
        ("neither.petition", MatterClass.NEITHER_PLATFORM),
        ("neither.secrets", MatterClass.NEITHER_PLATFORM),
        ("neither.privacy", MatterClass.NEITHER_PLATFORM),
        ("first.harm_occurred", MatterClass.POLICE_FIRST_RESPONSE),
        ("first.violent_risk", MatterClass.POLICE_FIRST_RESPONSE),
    ],
)
def test_shipped_catalog_classifies_the_plans_examples(
    code: str, matter_class: MatterClass
) -> None:
    category = load_catalog().category(code)
    assert category is not None, code
    assert category.matter_class is matter_class
    assert category.label_zh and category.label_en


def test_harassment_is_reported_by_work_order() -> None:
    category = load_catalog().category("police.harassment")
    assert category is not None and category.via is Via.WORK_ORDER


def test_settings_accept_a_catalog_path(tmp_path: Path) -> None:
    settings = BridgeSettings(return_queue="q", catalog_path=tmp_path / "m.toml")
    assert settings.catalog_path == tmp_path / "m.toml"
    assert BridgeSettings(return_queue="q").catalog_path is None


# -- broken files ----------------------------------------------------------------------------


def broken(tmp_path: Path, text: str) -> CatalogError:
    path = tmp_path / "matters.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CatalogError) as exc:
        load_catalog(path)
    message = str(exc.value)
    assert str(path) in message, message
    return exc.value


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    lines = [i for i, line in enumerate(text.splitlines(), start=1) if needle in line]
    return lines[occurrence - 1]


def only_problem(err: CatalogError) -> str:
    assert len(err.problems) == 1, err.problems
    return err.problems[0]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="file not found"):
        load_catalog(tmp_path / "nope.toml")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_bytes("title = '事项'".encode("gbk"))
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog(path)


def test_toml_syntax_error_names_line_and_key(tmp_path: Path) -> None:
    text = SHIPPED.replace('label_zh = "家庭纠纷"', 'label_zh = "家庭纠纷', 1)
    problem = only_problem(broken(tmp_path, text))
    line = line_of(text, 'label_zh = "家庭纠纷')
    assert re.search(rf"matters\.toml:{line}: label_zh: TOML syntax error", problem), problem


def test_duplicate_key_is_a_syntax_error_with_line(tmp_path: Path) -> None:
    text = SHIPPED.replace('code = "dispute.family"', 'code = "dispute.family"\ncode = "x"', 1)
    problem = only_problem(broken(tmp_path, text))
    line = line_of(text, 'code = "x"')
    assert f":{line}:" in problem


def test_unknown_class_on_a_category_names_line_and_field(tmp_path: Path) -> None:
    needle = 'class = "non_police_matter"'
    text = SHIPPED.replace(needle, 'class = "non_police"', 1)
    problem = only_problem(broken(tmp_path, text))
    line = line_of(text, 'class = "non_police"')
    assert f"matters.toml:{line}: categories[" in problem and "].class:" in problem, problem


def test_missing_field_points_at_the_table(tmp_path: Path) -> None:
    text = SHIPPED.replace('label_en = "Labour dispute"\n', "", 1)
    problem = only_problem(broken(tmp_path, text))
    header = line_of(text, 'code = "dispute.labour"') - 1  # the [[categories]] line above it
    assert text.splitlines()[header - 1] == "[[categories]]"
    assert (
        f"matters.toml:{header}: categories[" in problem and "].label_en: Field required" in problem
    )


def test_misspelt_key_is_refused(tmp_path: Path) -> None:
    text = SHIPPED.replace('label_zh = "消费纠纷"', 'lable_zh = "消费纠纷"', 1)
    err = broken(tmp_path, text)
    line = line_of(text, "lable_zh")
    assert any(f":{line}: " in p and "lable_zh" in p for p in err.problems), err.problems
    assert any("label_zh: Field required" in p for p in err.problems), err.problems


def test_bad_code_names_line(tmp_path: Path) -> None:
    text = SHIPPED.replace('code = "help.legal_aid"', 'code = "Help Legal Aid"', 1)
    problem = only_problem(broken(tmp_path, text))
    assert f":{line_of(text, 'Help Legal Aid')}: " in problem and "].code:" in problem


def test_duplicate_code_names_the_second_line(tmp_path: Path) -> None:
    text = SHIPPED.replace('code = "dispute.consumer"', 'code = "dispute.family"', 1)
    problem = only_problem(broken(tmp_path, text))
    line = line_of(text, 'code = "dispute.family"', occurrence=2)
    assert f":{line}: " in problem and "duplicate code 'dispute.family'" in problem


def test_bad_via_names_line(tmp_path: Path) -> None:
    text = SHIPPED.replace('via = "work_order"', 'via = "fax"', 1)
    problem = only_problem(broken(tmp_path, text))
    line = line_of(text, 'via = "fax"')
    assert f":{line}: " in problem and "].via:" in problem


def test_missing_class_section_is_reported(tmp_path: Path) -> None:
    start = SHIPPED.index("[classes.neither_platform]")
    end = SHIPPED.index("[classes.police_first_response]")
    text = SHIPPED[:start] + SHIPPED[end:]
    problem = only_problem(broken(tmp_path, text))
    assert "classes.neither_platform: class missing" in problem


def test_unknown_class_section_names_its_header(tmp_path: Path) -> None:
    text = SHIPPED.replace("[classes.police_first_response]", "[classes.police_first]", 1)
    err = broken(tmp_path, text)
    line = line_of(text, "[classes.police_first]")
    assert any(f":{line}: classes.police_first: unknown class" in p for p in err.problems)
    assert any("classes.police_first_response: class missing" in p for p in err.problems)


def test_wrong_type_names_line(tmp_path: Path) -> None:
    text = SHIPPED.replace('examples_zh = ["拖欠工资"]', 'examples_zh = "拖欠工资"', 1)
    problem = only_problem(broken(tmp_path, text))
    line = line_of(text, 'examples_zh = "拖欠工资"')
    assert f":{line}: " in problem
    assert "].examples_zh:" in problem


def test_unsupported_version(tmp_path: Path) -> None:
    text = SHIPPED.replace("version = 1", "version = 2", 1)
    problem = only_problem(broken(tmp_path, text))
    assert f":{line_of(text, 'version = 2')}: catalog.version: unsupported version 2" in problem


def test_no_categories(tmp_path: Path) -> None:
    text = SHIPPED[: SHIPPED.index("\n[[categories]]\n")]
    problem = only_problem(broken(tmp_path, text))
    assert "categories: Field required" in problem


def test_empty_label(tmp_path: Path) -> None:
    text = SHIPPED.replace('label_zh = "宅基地纠纷"', 'label_zh = ""', 1)
    problem = only_problem(broken(tmp_path, text))
    line = line_of(text, 'label_zh = ""')
    assert f":{line}: " in problem and "].label_zh:" in problem


def test_several_problems_are_all_reported(tmp_path: Path) -> None:
    text = SHIPPED.replace('class = "police_matter"', 'class = "x"', 2)
    assert len(broken(tmp_path, text).problems) == 2
