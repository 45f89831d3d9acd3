"""Settings text has one reader: every entry point (URL, --vary, settings box, TOML, JSON, a flag) accepts
and refuses the same text the same way, values survive value -> text -> value, and a refusal
names the setting and quotes the text (issue 16, part 3b)."""
from __future__ import annotations

import dataclasses
import json

import click
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from batchlab.cli import build_inputs, cli
from batchlab.core.config import ConfigError, SimConfig, config_fields
from batchlab.core.settings_text import (
    EMPTY_WORDS,
    FALSE_WORDS,
    SIM_FIELDS,
    SPEC_FIELDS,
    TRUE_WORDS,
    SettingError,
    check_setting,
    parse_lines,
    parse_setting,
    parse_values,
    setting_field,
    setting_text,
    split_settings,
)
from batchlab.core.sweep import parse_settings, parse_vary
from batchlab.webapp import state
from batchlab.workloads.spec import SpecError, WorkloadSpec, spec_fields

ALL_FIELDS = config_fields() + spec_fields()
SAFE_TEXT = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyzABCXYZ0123456789_:./-"), min_size=1, max_size=30)


def kind(f: dataclasses.Field) -> tuple[str, bool]:
    t = str(f.type)
    return t.replace(" | None", ""), t.endswith("| None")


def values_of(f: dataclasses.Field) -> st.SearchStrategy:
    """Every value the field's type, choices and range allow (None too when optional)."""
    base, optional = kind(f)
    lo, hi = f.metadata.get("range", (None, None))
    choices = f.metadata.get("choices")
    if choices:
        strategy = st.sampled_from(choices)
    elif base == "bool":
        strategy = st.booleans()
    elif base == "int":
        strategy = st.integers(lo, hi)
    elif base == "float":
        strategy = st.floats(lo, hi, allow_nan=False, allow_infinity=False)
    else:
        assert base == "str", f"{f.name}: a type the test does not know ({f.type})"
        strategy = SAFE_TEXT.filter(lambda t: t.lower() not in EMPTY_WORDS)
    return st.one_of(st.none(), strategy) if optional else strategy


def same(a, b) -> bool:
    return a == b and type(a) is type(b)


# ---------------------------------------------------------------- round trip --
def test_setting_names_are_unique_across_simconfig_and_workloadspec():
    assert not SIM_FIELDS.keys() & SPEC_FIELDS.keys()
    assert {f.name for f in ALL_FIELDS} == SIM_FIELDS.keys() | SPEC_FIELDS.keys()


@pytest.mark.parametrize("name", [f.name for f in ALL_FIELDS])
@given(data=st.data())
def test_every_value_of_every_setting_survives_text_and_back(name, data):
    value = data.draw(values_of(setting_field(name)), label=name)
    text = setting_text(value)
    assert same(parse_setting(name, text), value), text
    assert same(parse_setting(name.replace("_", "-"), f"  {text} "), value)  # dashes, spaces
    if not isinstance(value, str):  # a TOML or JSON scalar reads as its text
        assert same(parse_setting(name, value), value)


@pytest.mark.parametrize("f", [f for f in ALL_FIELDS if kind(f)[0] == "bool"], ids=lambda f: f.name)
def test_booleans_take_the_same_words_everywhere(f):
    for words, want in ((TRUE_WORDS, True), (FALSE_WORDS, False)):
        for word in words:
            for spelled in (word, word.upper(), word.capitalize()):
                assert parse_setting(f.name, spelled) is want
    with pytest.raises(SettingError, match=f"^{f.name}: 'maybe' is not true or false"):
        parse_setting(f.name, "maybe")


@pytest.mark.parametrize("f", [f for f in ALL_FIELDS if kind(f)[1]], ids=lambda f: f.name)
def test_an_optional_setting_takes_none_auto_off_and_nothing_after_its_own_reading(f):
    base, _ = kind(f)
    choices = f.metadata.get("choices") or ()
    for word in ("none", "NONE", "auto", "Auto", "off", "", "  "):
        expected = False if base == "bool" and word.lower() == "off" else None
        expected = word if word in choices else expected
        assert parse_setting(f.name, word) == expected, word


# ------------------------------------------------------------- entry points --
def url(name: str, text: str):
    settings, problems = state.settings_from_params({name: text})
    if problems:
        return "refused", problems[0].removesuffix("; the default is used").removesuffix("; ignored")
    return SimConfig(**settings["sim"]), WorkloadSpec(**settings["spec"])


def vary(name: str, text: str):
    name, values = parse_vary(f"{name}={text}")
    assert len(values) == 1
    sim, spec = split_settings({name: values[0]})
    return SimConfig(**sim), WorkloadSpec(**spec)


def box(name: str, text: str):
    return parse_settings([f"{name}={text}  # a comment"])


def config_file(tmp_path, suffix: str, body: str):
    path = tmp_path / f"settings{suffix}"
    path.write_text(body)
    cfg, spec, _ = build_inputs(str(path))
    return cfg, spec


def toml(tmp_path, name: str, text: str):
    return config_file(tmp_path, ".toml", f"{name} = {json.dumps(text)}\n")  # a TOML basic string


def json_file(tmp_path, name: str, text: str):
    return config_file(tmp_path, ".json", json.dumps({name: text}))


def flag(name: str, text: str):
    """``batchlab run --NAME TEXT`` as the command line reads it (up to the settings it would run)."""
    ctx = cli.commands["run"].make_context("run", [f"--{name}", text])
    settings = {k: v for k, v in ctx.params.items() if k in SIM_FIELDS or k in SPEC_FIELDS}
    cfg, spec, _ = build_inputs(None, **settings)
    return cfg, spec


def outcome(read, *args):
    try:
        return read(*args)
    except (ConfigError, SpecError) as exc:
        return "refused", str(exc)
    except click.ClickException as exc:
        return "refused", exc.message


CASES = [
    ("gpus", "8"), ("gpus", " 8 "), ("gpus", "+8"), ("gpus", "-1"), ("gpus", "0"), ("gpus", "8.0"), ("gpus", "eight"),
    ("gpus", ""), ("gpus", "none"), ("gpus", "١٢"), ("seed", "1_000"), ("seed", "-5"),
    ("rate", "2.5"), ("rate", "3"), ("rate", "1e-3"), ("rate", "none"), ("rate", "off"), ("rate", "auto"),
    ("rate", ""), ("rate", "nan"), ("rate", "inf"), ("rate", "-2"), ("rate", "1e999"),
    ("d_sla_tbt", "off"), ("d_sla_tbt", "NONE"), ("d_sla_tbt", "0.1"), ("d_sla_tbt", "100"),
    ("sla_control", "off"), ("sla_control", "ON"), ("sla_control", "yes"), ("sla_control", "0"),
    ("sla_control", "maybe"), ("sla_control", "none"), ("keep_failed", "1"), ("real_timestamps", "off"),
    ("real_timestamps", "auto"), ("real_timestamps", "true"),
    ("mode", "static_fifo"), ("mode", "Static_FIFO"), ("mode", "warp"), ("fill", "auto"), ("fill", "full"),
    ("fill", "packed"), ("arrival", "auto"), ("arrival", "poisson"), ("arrival", "trace"),
    ("mem_margin", "none"), ("mem_margin", "auto"), ("predictor", "oracle"), ("predictor", "psychic"),
    ("num_requests", "10_000"), ("num_requests", "1e4"), ("max_num_batched_tokens", "off"), ("max_wait", "2.5"),
    ("gpuss", "4"), ("d-sla-ttft", "5"), ("colour", "blue"),
]


@pytest.mark.parametrize("name,text", CASES)
def test_the_same_text_is_read_the_same_by_every_entry_point(tmp_path, name, text):
    seen = {"url": outcome(url, name, text), "vary": outcome(vary, name, text), "box": outcome(box, name, text),
            "toml": outcome(toml, tmp_path, name, text), "json": outcome(json_file, tmp_path, name, text)}
    if name in SIM_FIELDS | SPEC_FIELDS and not str(setting_field(name).type).startswith("bool"):
        seen["flag"] = outcome(flag, name.replace("_", "-"), text)  # a flag (booleans are --x/--no-x)
    assert len({repr(v) for v in seen.values()}) == 1, seen
    first = seen["url"]
    if first[0] == "refused":
        words = setting_field(name).name if name != "colour" and name != "gpuss" else name
        assert first[1].startswith(f"{words}:"), first  # the message names the setting


def test_the_four_readers_of_old_now_agree_on_off():
    # `off` was false in --vary and refused in a URL
    assert url("sla_control", "off")[0].sla_control is False
    assert vary("sla_control", "off")[0].sla_control is False


@pytest.mark.parametrize("literal,text", [
    ("4", "4"), ("4.0", "4.0"), ("-1", "-1"), ("true", "true"), ('"4"', "4"),
])
def test_a_toml_or_json_value_means_what_its_text_means(tmp_path, literal, text):
    for suffix, body in ((".toml", f"gpus = {literal}\n"), (".json", f'{{"gpus": {literal}}}')):
        assert outcome(config_file, tmp_path, suffix, body) == outcome(box, "gpus", text)
    for suffix, body in ((".toml", f"sla_control = {literal}\n"), (".json", f'{{"sla_control": {literal}}}')):
        assert outcome(config_file, tmp_path, suffix, body) == outcome(box, "sla_control", text)


def test_json_null_is_none_and_a_list_is_no_setting(tmp_path):
    cfg, _ = config_file(tmp_path, ".json", '{"d_sla_tbt": null}')
    assert cfg.d_sla_tbt is None
    with pytest.raises(SettingError, match=r"^gpus: 'none' is not an integer$"):
        config_file(tmp_path, ".json", '{"gpus": null}')
    with pytest.raises(SettingError, match=r"^gpus: \[1, 2\] is not a single value$"):
        config_file(tmp_path, ".toml", "[sim]\ngpus = [1, 2]\n")


# ------------------------------------------------------------------- errors --
@pytest.mark.parametrize("name,text,message", [
    ("gpuss", "4", "gpuss: unknown setting (did you mean gpus?)"),
    ("sla_control", "maybe", "sla_control: 'maybe' is not true or false"),
    ("gpus", "-1", "gpus: must be between 1 and 1000, got -1"),
    ("gpus", "8.0", "gpus: '8.0' is not an integer"),
    ("rate", "fast", "rate: 'fast' is not a finite number or none"),
    ("rate", "inf", "rate: 'inf' is not a finite number or none"),
    ("gamma_shape", "", "gamma_shape: no value given"),
    ("mode", "warp", "mode: must be one of "),
    ("sla_control", "x" * 1000, "sla_control: 'xxxx"),
    ("gpus", "9" * 1000, "gpus: must be between 1 and 1000, got an integer of about "),
])
def test_a_refusal_names_the_setting_and_quotes_the_text(name, text, message):
    with pytest.raises(SettingError) as err:
        parse_setting(name, text)
    assert str(err.value).startswith(message) and err.value.field == message.split(":")[0]
    assert len(str(err.value)) < 1000  # a long text is quoted cut


def test_free_text_is_checked_by_its_dataclass_not_here():
    assert parse_setting("predictor", "psychic") == "psychic"  # WorkloadSpec refuses it, naming the forms
    with pytest.raises(SpecError, match="^predictor: "):
        box("predictor", "psychic")


@pytest.mark.parametrize("f", [f for f in ALL_FIELDS if f.metadata.get("range")], ids=lambda f: f.name)
def test_a_value_out_of_range_is_refused_in_the_words_of_the_dataclass(f):
    lo, hi = f.metadata["range"]
    cls, err = (SimConfig, ConfigError) if f.name in SIM_FIELDS else (WorkloadSpec, SpecError)
    for bad in (lo - 1, hi * 2 + 1):
        bad = int(bad) if kind(f)[0] == "int" else float(bad)
        with pytest.raises(SettingError) as ours:
            parse_setting(f.name, setting_text(bad))
        with pytest.raises(err) as theirs:
            cls(**{f.name: bad})
        assert str(ours.value) == str(theirs.value)
        assert check_setting(f.name, lo) == lo and check_setting(f.name, hi) == hi


def test_lists_and_ranges_read_each_value_as_one_setting():
    assert parse_values("sla_control", "on,off,yes") == [True, False]
    assert parse_values("d_sla_tbt", "off, 0.05 ,auto") == [None, 0.05]
    assert parse_values("gpus", "1:7:3") == [1, 4, 7]
    assert parse_values("d_sla_ttft", "0.5:1:0.0005")[:2] == [0.5, 0.5005]  # STEP below the field's range
    with pytest.raises(SettingError, match=r"^rate: must be between 1e-06 and 1e\+06 req/s, got 0$"):
        parse_values("rate", "0:1:0.5")  # every value of a range is checked
    with pytest.raises(SettingError, match="^gpus: 'a' is not an integer"):
        parse_values("gpus", "1:a:1")
    with pytest.raises(SettingError, match="^mode: no values given"):
        parse_values("mode", " , ")


def test_settings_lines_skip_comments_and_the_later_line_wins():
    assert parse_lines(["# base", "", "gpus=2", "gpus = 3  # more", "d-sla-tbt=off"]) == {"gpus": 3, "d_sla_tbt": None}
    with pytest.raises(SettingError, match="^'gpus 4': expected NAME=VALUE"):
        parse_lines(["gpus 4"])


# ---------------------------------------------------------------------- CLI --
@pytest.mark.parametrize("args,words", [
    (["sweep", "--no-store", "--vary", "sla_control=maybe"], "--vary sla_control: 'maybe' is not true or false"),
    (["sweep", "--no-store", "--vary", "gpuss=1,2"], "--vary gpuss: unknown setting (did you mean gpus?)"),
    (["run", "--no-store", "--config", "{toml}"], "gpus: must be between 1 and 1000, got -3"),
    (["run", "--no-store", "--config", "{json}"], "d_sla_tbt: 'never' is not a finite number or none"),
])
def test_a_bad_setting_on_the_command_line_is_one_line_naming_it(tmp_path, args, words):
    (tmp_path / "c.toml").write_text("[sim]\ngpus = -3\n")
    (tmp_path / "c.json").write_text('{"d_sla_tbt": "never"}')
    args = [a.format(toml=tmp_path / "c.toml", json=tmp_path / "c.json") for a in args]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code in (1, 2) and isinstance(res.exception, SystemExit)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines == [f"Error: {words}"], res.stderr
