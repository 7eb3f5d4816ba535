"""Editor support: the Pygments lexer and the VS Code TextMate grammar tokenise every shipped file
(and the README's examples) with no error token, and the CLI colours its error excerpts with the
lexer only on a terminal."""

from __future__ import annotations

import importlib
import importlib.metadata
import io
import json
import re
from pathlib import Path

import pytest
from pygments.token import Comment, Error, Keyword, Name, Number, Operator, Punctuation

from trionet_dsl.lang.lexer import TrioNetLexer, source_line_tokens

ROOT = Path(__file__).resolve().parents[2]
VSCODE = ROOT / "editors" / "vscode"
GRAMMAR = VSCODE / "syntaxes" / "trionet.tmLanguage.json"


def _readme_examples() -> list[tuple[str, str]]:
    """The README's ``` blocks whose first statement (after comments) is `space ...` or `arch ...`."""
    text = (ROOT / "README.md").read_text()
    out = []
    for i, m in enumerate(re.finditer(r"^```[^\n]*\n(.*?)^```", text, re.M | re.S)):
        body = m.group(1)
        code = [ln for ln in body.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        if code and code[0].startswith(("space ", "arch ")):
            out.append((f"README.md block {i}", body))
    return out


def _shipped() -> list[tuple[str, str]]:
    files = sorted(
        [
            *(ROOT / "spaces").rglob("*.space"),
            *(ROOT / "spaces" / "archs").glob("*.arch"),
            *(ROOT / "tests" / "data").glob("*.space"),
        ]
    )
    return [(str(p.relative_to(ROOT)), p.read_text()) for p in files] + _readme_examples()


SOURCES = _shipped()


def test_sources_are_found():
    names = [n for n, _ in SOURCES]
    assert any(n.endswith(".space") for n in names) and any(n.endswith(".arch") for n in names)
    assert sum(n.startswith("README.md") for n in names) >= 2, names


# ---------------------------------------------------------------- Pygments


def _lex(text: str) -> list[tuple[object, str]]:
    return list(TrioNetLexer(stripnl=False, ensurenl=False).get_tokens(text))


@pytest.mark.parametrize("name,text", SOURCES, ids=[n for n, _ in SOURCES])
def test_lexer_tokenises_shipped_file(name, text):
    tokens = _lex(text)
    errors = [v for t, v in tokens if t in Error]
    assert not errors, f"{name}: error tokens {errors[:5]}"
    assert "".join(v for _, v in tokens) == text


def _kind(text: str, word: str):
    """The token type of the first token whose value is `word` in `text`."""
    return next(t for t, v in _lex(text) if v == word)


def test_lexer_token_kinds():
    space = (ROOT / "spaces" / "trionet_r50.space").read_text()
    assert _kind(space, "local") in Name.Builtin
    assert _kind(space, "axial") in Name.Builtin
    botnet = (ROOT / "spaces" / "botnet_r50.space").read_text()
    assert _kind(botnet, "global") in Name.Builtin
    assert _kind(space, "3x224x224") in Number
    assert _kind(space, "0.75x") in Number
    assert _kind(space, "1000") in Number
    assert _kind(space, "kernel") in Name.Attribute
    assert _kind(space, "trionet_r50") in Name.Class
    for kw in (
        "space",
        "input",
        "classes",
        "stem",
        "block",
        "bottleneck",
        "stage",
        "op",
        "width",
        "heads",
        "blocks",
        "stride",
        "expansion",
        "maxpool",
    ):
        assert _kind(space, kw) in Keyword, kw
    assert _kind("# x\nspace s {}", "# x") in Comment
    assert _kind("stem { conv 7x7 64 stride 2 }", "conv") in Keyword  # a stem layer
    assert _kind("op conv(kernel=3)", "conv") in Name.Builtin  # an operator
    assert _kind("op local(span=7, heads=4|8)", "heads") in Name.Attribute  # an argument, not the statement
    rng = _lex("width 32..128 step 16; heads 2 | 4")
    assert (Operator, "..") in rng and (Operator, "|") in rng and (Keyword, "step") in rng and (Punctuation, ";") in rng
    arch = _lex("arch a of trionet_r50 {\n  s1.0 local(span=7) width 64 heads 8\n}")
    assert (Name.Label, "s1") in arch and (Punctuation, ".") in arch and (Number.Integer, "0") in arch
    assert (Name.Class, "trionet_r50") in arch
    assert any(t in Error for t, _ in _lex("space s { input 3x3x3 $ }")), "a stray character is an error"
    basic = (ROOT / "spaces" / "resnet18_basic.space").read_text()
    assert _kind(basic, "basic") in Keyword.Type
    resnext = (ROOT / "spaces" / "resnext50.space").read_text()
    assert _kind(resnext, "groups") in Name.Attribute


def test_lexer_guesses_from_content():
    assert TrioNetLexer.analyse_text((ROOT / "spaces" / "trionet_small.space").read_text()) > 0
    assert TrioNetLexer.analyse_text("arch a of trionet_small {\n}") > 0
    assert TrioNetLexer.analyse_text("def f(): pass") == 0


def test_lexer_is_registered_as_entry_point():
    eps = importlib.metadata.entry_points(group="pygments.lexers")
    if not any(ep.name == "trionet" for ep in eps):
        pytest.skip(
            "the 'trionet' pygments.lexers entry point is not installed here (run `pip install -e .` to register it)"
        )
    from pygments.lexers import get_lexer_by_name, get_lexer_for_filename

    assert isinstance(get_lexer_by_name("trionet"), TrioNetLexer)
    assert isinstance(get_lexer_by_name("trionet-space"), TrioNetLexer)
    assert isinstance(get_lexer_for_filename("a.space"), TrioNetLexer)
    assert isinstance(get_lexer_for_filename("spaces/archs/resnet50.arch"), TrioNetLexer)


def test_source_line_tokens_match_the_error_excerpt():
    from trionet_dsl.lang.errors import SpaceError

    src = "space s {\r\n\tinput 3x8x8 # c\r\n  stem {\n    conv 3x3 8\n  }\n}"
    for line in range(1, 7):
        err = SpaceError("x", line=line, column=1, source=src)
        shown = err.excerpt().split("\n")[0].split(" | ", 1)[1]
        tokens = source_line_tokens(src, line)
        assert "".join(v for _, v in tokens) == shown
    assert (Keyword, "conv") in source_line_tokens(src, 4)  # lexed in context: a stem layer
    assert source_line_tokens(src, 0) == [] and source_line_tokens(src, 7) == []


# ---------------------------------------------------------------- TextMate (VS Code)


def _grammar_rules() -> list[tuple[re.Pattern[str], str | None, dict[int, str]]]:
    grammar = json.loads(GRAMMAR.read_text())
    rules = []
    for pat in grammar["patterns"]:
        assert set(pat) <= {"match", "name", "captures", "comment"}, pat  # one-line rules only
        assert "(?<=" not in pat["match"] and "(?<!" not in pat["match"], "no lookbehind"
        caps = {int(k): v["name"] for k, v in pat.get("captures", {}).items()}
        rules.append((re.compile(pat["match"]), pat.get("name"), caps))
    return rules


def _tm_tokenise(line: str, rules) -> list[tuple[int, int, str]]:
    """Scopes over `line` as a TextMate engine assigns them with match-only rules: from the current
    position, the rule whose match starts first wins (ties: the earlier rule); captures scope their
    groups, a rule's `name` scopes its whole match."""
    spans, pos = [], 0
    while pos < len(line):
        best = None
        for rx, name, caps in rules:
            m = rx.search(line, pos)
            if m and m.end() > m.start() and (best is None or m.start() < best[0].start()):
                best = (m, name, caps)
        if best is None:
            break
        m, name, caps = best
        if name:
            spans.append((m.start(), m.end(), name))
        for g, scope in caps.items():
            if m.group(g) is not None:
                spans.append((m.start(g), m.end(g), scope))
        pos = m.end()
    return spans


def _scopes_of(line: str, rules) -> list[list[str]]:
    per_char: list[list[str]] = [[] for _ in line]
    for a, b, scope in _tm_tokenise(line, rules):
        for i in range(a, b):
            per_char[i].append(scope)
    return per_char


@pytest.mark.parametrize("name,text", SOURCES, ids=[n for n, _ in SOURCES])
def test_textmate_grammar_tokenises_shipped_file(name, text):
    rules = _grammar_rules()
    for n, line in enumerate(text.split("\n"), 1):
        for col, (ch, scopes) in enumerate(zip(line, _scopes_of(line, rules), strict=True), 1):
            if ch.isspace():
                continue
            assert scopes, f"{name}:{n}:{col}: {ch!r} has no scope in: {line!r}"
            assert not any(s.startswith("invalid.") for s in scopes), f"{name}:{n}:{col}: {ch!r} is invalid: {line!r}"


def _scope(line: str, word: str) -> str:
    """The innermost scope of `word`'s first character in `line`."""
    return _scopes_of(line, _grammar_rules())[line.index(word)][-1]


def test_textmate_grammar_scopes():
    assert _scopes_of("  # x", _grammar_rules())[2] == [
        "comment.line.number-sign.trionet",
        "punctuation.definition.comment.trionet",
    ]
    assert _scope("  # x", "x").startswith("comment.line.number-sign")
    assert _scope("space trionet_r50 {", "space").startswith("keyword.control")
    assert _scope("space trionet_r50 {", "trionet_r50").startswith("entity.name")
    assert _scope("arch a of trionet_r50 {", "trionet_r50").startswith("entity.name")
    assert _scope("  stage s4 blocks 3 width 512 stride 2 {", "s4").startswith("entity.name")
    assert _scope("  stage s4 blocks 3 width 512 stride 2 {", "blocks").startswith("keyword.control")
    assert _scope("  s1.0 local(span=7) width 64 heads 8", "s1").startswith("entity.name")
    line = "    op conv(kernel=3, groups=32) | local(span=7, heads=4|8) | axial | global(max_mib=128)"
    for op in ("conv", "local", "axial", "global"):
        assert _scope(line, op).startswith("support.function"), op
    assert _scope(line, "groups").startswith("variable.parameter")
    assert _scope(line, "max_mib").startswith("variable.parameter")
    assert _scope(line, "|").startswith("keyword.operator")
    assert _scope(line, "kernel").startswith("variable.parameter")
    assert _scope(line, "heads").startswith("variable.parameter")
    assert _scope("    conv 7x7 64 stride 2", "conv").startswith("keyword.control")  # a stem layer
    assert _scope("    maxpool 3x3 stride 2", "maxpool").startswith("keyword.control")
    assert _scope("  input 3x224x224", "3x224x224").startswith("constant.numeric")
    assert _scope("    width 0.5x | 1.0x", "0.5x").startswith("constant.numeric")
    assert _scope("    width 32..128 step 16", "..").startswith("keyword.operator")
    assert _scope("    width 32..128 step 16", "step").startswith("keyword.control")
    assert _scope("    width 32..128 step 16", "128").startswith("constant.numeric")
    assert _scope("  classes 1000", "1000").startswith("constant.numeric")
    assert _scope("space s { input 3x3x3 $ }", "$").startswith("invalid.")
    assert _scope("  block basic {", "basic") == _scope("  block bottleneck {", "bottleneck")  # a block type
    assert _scope("    op conv(kernel=3, groups=32)", "groups").startswith("variable.parameter")


def test_vscode_extension_manifest():
    pkg = json.loads((VSCODE / "package.json").read_text())
    (lang,) = pkg["contributes"]["languages"]
    assert lang["id"] == "trionet" and set(lang["extensions"]) == {".space", ".arch"}
    (gram,) = pkg["contributes"]["grammars"]
    assert gram["language"] == "trionet"
    assert (VSCODE / gram["path"]).resolve() == GRAMMAR.resolve()
    assert gram["scopeName"] == json.loads(GRAMMAR.read_text())["scopeName"]
    conf = json.loads((VSCODE / lang["configuration"]).read_text())
    assert conf["comments"]["lineComment"] == "#"
    assert ["{", "}"] in conf["brackets"] and ["(", ")"] in conf["brackets"]
    assert (ROOT / "editors" / "README.md").is_file()


# ---------------------------------------------------------------- CLI error excerpts


def _cli():
    for mod in ("trionet_dsl.app.cli", "trionet_dsl.app.cli"):
        try:
            return importlib.import_module(mod)
        except ModuleNotFoundError:
            continue
    pytest.skip("no CLI module found")


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("tty", [False, True])
def test_cli_error_excerpt_is_highlighted_only_on_a_terminal(tty, monkeypatch):
    import typer

    from trionet_dsl.lang.errors import SpaceError

    cli = _cli()
    src = (ROOT / "tests" / "data" / "tiny.space").read_text().replace("| local(", "| locl(")
    line = next(i for i, ln in enumerate(src.split("\n"), 1) if "locl" in ln)
    column = src.split("\n")[line - 1].index("locl") + 1
    err = SpaceError(
        "unknown operator 'locl'",
        file="bad.space",
        line=line,
        column=column,
        source=src,
        width=4,
        hint="did you mean 'local'?",
    )
    for var in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    stream = _Stream(tty)
    monkeypatch.setattr("sys.stderr", stream)
    with pytest.raises(typer.Exit):
        cli._fail(err)
    out = stream.getvalue()
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out)
    assert plain == err.render() + "\n"
    if not tty:
        assert out == err.render() + "\n"
    else:
        source_line = out.split("\n")[1]
        assert "\x1b[" in source_line, "the source line is coloured on a terminal"
