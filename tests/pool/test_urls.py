"""Database URLs: parsed as libpq would, refused when ambiguous, never shown with a secret."""

from __future__ import annotations

import traceback
import warnings
from urllib.parse import quote

import pytest
from django.test import override_settings
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from django_dbtuning import InvalidDatabaseURL
from django_dbtuning.pool import conninfo, database, redact_url
from django_dbtuning.pool.checks import check_databases
from django_dbtuning.pool.conninfo import libpq_keywords
from django_dbtuning.pool.startup import join_options
from django_dbtuning.pool.url import parse_url

SECRET = "s3cret"


def exception_texts(exc: BaseException) -> list[str]:
    """Everything an exception can show: str, repr, args, traceback, the whole chain."""
    texts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        texts += [str(current), repr(current), repr(current.args)]
        pending += [current.__cause__, current.__context__]
    return texts


def check_messages(entry):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Overriding setting DATABASES")
        with override_settings(DATABASES={"default": entry}):
            return [f"{m.msg} {m.hint}" for m in check_databases()]


# -- regressions: every shape from the issue --------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("//app:s3cret@db/shop", "must start with postgres:// or postgresql://"),
        ("app:s3cret@db/shop", "must start with postgres:// or postgresql://"),
        ("postgres:/app:s3cret@db/shop", "must start with postgres://"),
        ("postgres://app:s3#cret@db/shop", "a raw '#' is not allowed"),
        ("postgres://app:s3?cret@db/shop", "a raw '@' after the host"),
        ("postgres://app:s3/cret@db/shop", "a raw '@' after the host"),
        ("postgres://app:5/s3cret@db/shop", "a raw '@' after the host"),
        ("postgres://app:s3@cret@db/shop", "more than one '@'"),
        ("postgres://app:s3cret:x@db/sh\nop", "control character"),
        ("postgres://app:s3%zzcret@db/shop", "password has an invalid percent-escape"),
        ("postgres://app:s3%FFcret@db/shop", "password has an invalid percent-escape"),
        ("postgres://app@db/shop?password=s3cret", "put password in the URL itself"),
        ("postgres://app@db/shop?s3cret", "query parameter #1 has no '='"),
        ("postgres://app@db/shop?sslpassword=x&sslpassword=s3cret", "repeats"),
        (
            "postgres://app:s3cret@db/shop?sslmode=bogus",
            "?sslmode=***: invalid sslmode value",
        ),
        ("postgres://app:s3cret@db/shop?pasword=s3cret", "unknown parameter 'pasword'"),
        ("postgres://app:s3cret@[::1/shop", "malformed"),
        ("postgres://app:s3cret/shop", "a port must be a number from 1 to 65535"),
    ],
)
def test_unparsable_or_ambiguous_urls_are_refused_without_the_secret(url, message):
    with pytest.raises(InvalidDatabaseURL) as excinfo:
        database(url)
    assert message in str(excinfo.value)
    for text in exception_texts(excinfo.value):
        assert SECRET not in text
    assert SECRET not in redact_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "postgres://app:pw@db/shop?port=-1",
        "postgres://app:pw@db/shop?port=0",
        "postgres://app:pw@db/shop?port=65536",
        "postgres://app:pw@db:99999/shop",
        "postgres://app:pw@db:+5432/shop",
        "postgres://app:pw@h1:5432,h2:x/shop",
    ],
)
def test_ports_outside_1_to_65535_are_refused(url):
    with pytest.raises(
        InvalidDatabaseURL, match="a port must be a number from 1 to 65535"
    ):
        database(url)


def test_a_password_only_in_the_query_string_stays_out_of_every_message():
    entry = database(f"postgres://app@db/shop?sslmode=require&sslpassword={SECRET}")
    assert entry["OPTIONS"]["sslpassword"] == SECRET
    bad = {**entry, "OPTIONS": {**entry["OPTIONS"], "sslmode": "bogus"}}
    messages = check_messages(bad)
    assert any("invalid sslmode value" in m for m in messages)
    assert not any(SECRET in m for m in messages)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgres://app:s3cret@db.example.com:5432/shop",
            "postgres://app:***@db.example.com:5432/shop",
        ),
        ("postgres://app@h/db", "postgres://app@h/db"),
        ("//app:s3cret@db/shop", "***"),
        ("app:s3cret@db/shop", "***"),
        ("s3cret", "***"),
        ("postgres:/app:s3cret@db/shop", "***"),
        ("postgres://app:s3#cret@db/shop", "postgres://app:***"),
        ("postgres://app:s3/cret@db/shop", "postgres://app:***"),
        ("postgres://app:s3cret/shop", "postgres://app:***"),
        (
            "postgres://app@db/shop?password=s3cret",
            "postgres://app@db/shop?password=***",
        ),
        (
            "postgres://db/shop?sslmode=require&sslpassword=s3cret&application_name=x",
            "postgres://db/shop?sslmode=require&sslpassword=***",
        ),
        ("postgres://app@db/shop?sslpassword=x@s3cret", "postgres://***"),
        ("postgres://app:s3cret@[::1]:5433/db", "postgres://app:***@[::1]:5433/db"),
        ("postgres://u:pw@h1:1,h2:s3cret/db", "postgres://u:***@h1:1,h2:***"),
        ("postgres://app:@s3cret/shop", "postgres://app:@***/shop"),
    ],
)
def test_redact_url_hides_whatever_could_be_a_secret(url, expected):
    assert redact_url(url) == expected


@pytest.mark.parametrize(
    ("url", "host", "port"),
    [
        ("postgres://u:pw@[::1]:5433/db", "::1", "5433"),
        ("postgres://u:pw@[fe80::1%25eth0]/db", "fe80::1%eth0", ""),
        ("postgres://u:pw@h1:5432,h2:5433/db", "h1,h2", "5432,5433"),
        ("postgres://u:pw@h1:5432,h2/db", "h1,h2", "5432,"),
        ("postgres://u:pw@h1,[::1]:6000/db", "h1,::1", ",6000"),
        ("postgres://u:pw@DB.Example.COM/db", "DB.Example.COM", ""),
    ],
)
def test_ipv6_and_multiple_hosts(url, host, port):
    entry = database(url)
    assert (entry["HOST"], entry["PORT"], entry["PASSWORD"]) == (host, port, "pw")


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("requirepeer", "postgres"),
        ("sslcertmode", "allow"),
        ("gssdelegation", "0"),
        ("min_protocol_version", "3.0"),
        ("max_protocol_version", "latest"),
        ("sslpassword", "x"),
        ("load_balance_hosts", "random"),
    ],
)
def test_every_keyword_the_installed_libpq_knows_is_accepted_in_urls(keyword, value):
    if keyword not in libpq_keywords():
        pytest.skip(f"this libpq has no {keyword}")
    entry = database(f"postgres://app:pw@db/shop?{keyword}={value}")
    assert entry["OPTIONS"][keyword] == value
    assert check_messages(entry) == []


def test_a_plus_sign_in_the_query_is_a_plus_sign_as_in_libpq():
    entry = database("postgres://app:pw@db/shop?application_name=a+b")
    assert entry["OPTIONS"]["application_name"] == "a+b"


def test_the_parsed_url_repr_shows_no_secret():
    parsed = parse_url(f"postgres://app:{SECRET}@db/shop?sslpassword={SECRET}")
    assert parsed.password == SECRET
    assert SECRET not in repr(parsed)
    assert SECRET not in str(parsed)


# -- property: no generated secret ever appears in any output ---------------------------------

# Every secret interleaves runs of at most three characters from the whole alphabet (URL
# delimiters included) with private-use markers: any leak of four characters or more
# carries a marker, and nothing else can put one in an output.
MARKERS = st.characters(min_codepoint=0xE000, max_codepoint=0xF8FF)
DELIMITERS = ":/?#@&=%+[]. ,;\\'\"\t\n"
# What a secret meets in the wild: a raw '&' before a parameter this package or libpq
# knows (its tail is then parsed, and validated, as that parameter), a ';' that some
# readers take for '&', and both percent-encoded.
SEPARATED = st.builds(
    "{}{}=".format,
    st.sampled_from(["&", ";", "%26", "%3B", "; "]),
    st.sampled_from(
        [
            "pool",
            "pool_timeout",
            "statement_timeout",
            "sslmode",
            "connect_timeout",
            "options",
            "host",
            "application_name",
            "hostaddr",
            "port",
            "password",
            "sslpassword",
            "x",
        ]
    ),
)
CHUNKS = st.one_of(
    st.text(
        st.one_of(
            st.sampled_from(DELIMITERS),
            st.characters(codec="utf-8", exclude_categories=("Cs", "Co")),
        ),
        max_size=3,
    ),
    SEPARATED,
)


@st.composite
def secrets(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.tuples(CHUNKS, MARKERS), min_size=1, max_size=5))
    return "".join(chunk + marker for chunk, marker in parts)


SHAPES = [
    "postgres://app:{pw}@db/shop",
    "postgresql://app:{pw}@db:5432/shop?sslmode=require",
    "//app:{pw}@db/shop",
    "app:{pw}@db/shop",
    "postgres:/app:{pw}@db/shop",
    "postgres://app:{pw}@[::1]:5433/shop",
    "postgres://app:{pw}@h1:5432,h2:5433/shop",
    "postgres://app:{pw}@db/shop?pool_max_size=x",
    "postgres://app:{pw}@db/shop?sslmode=bogus",
    "postgres://app:{pw}@db/shop?port=-1",
    "postgres://app:{pw}@db/shop?options=-cX",
    "postgres://app:{pw}@db:99999/shop",
    "postgres://app:{pw}@/shop?host=%2Frun%2Fpg",
    "postgres://app:{pw}@db/",
    "postgres://app:{pw}@db/shop?sslmod=require",
    "postgres://app@db/shop?password={pw}",
    "postgres://app@db/shop?sslpassword={pw}",
    "postgres://app@db/shop?sslmode=require&sslpassword={pw}&application_name=x",
    "postgres://app@db/shop?sslpassword={pw}&sslmode=bogus",
    "postgres://app@db/shop?sslpassword={pw}&sslpassword={pw}",
    "postgres://app:x@db/shop?sslkey=x&sslpassword={pw}",
    "postgres://app:{pw}@db/shop#frag",
    "postgres://app@db/shop?sslmode=require;password={pw}",
    "postgres://app@db/shop?application_name=x;sslpassword={pw}&sslmode=bogus",
    "postgres://app@db/shop?sslmode=require%3Bpassword%3D{pw}",
    "postgres://app@db/shop?sslpassword={pw}&pool=true&statement_timeout=5s",
    "postgres://app@db/shop?sslpassword={pw}&pgbouncer=true&statement_timeout=5s",
    "postgres://app;password={pw}@db/shop",
    "postgres://app:x@db;password={pw}/shop",
    "postgres://app:x@db/shop;password={pw}",
    "postgres://app:x@db/shop?options=-c%20a%3D{pw}&pgbouncer=true",
    # libpq strips a require_auth method's '!' before quoting it
    "postgres://app:x@db/shop?require_auth=!{pw}",
    "postgres://app:x@db/shop?require_auth=!!{pw}",
    "postgres://app:x@db/shop?require_auth=password,!{pw}",
    "postgres://app:x@db/shop?require_auth=!password,{pw}",
    "postgres://app:x@db/shop?service=!{pw}",
    "postgres://app:x@db/shop?sslmode=!{pw}",
    "postgres://app:x@db/shop?port=!{pw}",
    "postgres://app:x@db/shop?options=-c%20log_connections%3D{pw}",
    "POSTGRES://app:{pw}@db/shop",
    "mysql://app:{pw}@db/shop",
    "postgres://app:{pw}/shop",
    "{pw}@db/shop",
    "{pw}",
]


# How a value may be written around a secret: libpq lists, negations, quotes, escapes.
VALUE_FORMS = [
    "{}",
    "!{}",
    "!!{}",
    "{},x",
    "x,{}",
    "password,!{}",
    "!password,!{}",
    '"{}"',
    "'{}'",
    " {} ",
    "{}\\x",
    "x={}",
    "-{}",
    "%21{}",
]


def marker_forms(secret: str) -> list[str]:
    markers = [char for char in secret if 0xE000 <= ord(char) <= 0xF8FF]
    forms = []
    for marker in markers:
        forms += [marker, repr(marker)[1:-1], quote(marker).lower()]
    return forms


def assert_hidden(secret: str, texts: list[str]) -> None:
    forms = marker_forms(secret)
    for text in texts:
        lowered = text.lower()
        leaked = [form for form in forms if form.lower() in lowered]
        assert not leaked, f"secret leaked in: {text!r}"


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    secret=secrets(),
    shape=st.sampled_from(SHAPES),
    raw=st.text(st.sampled_from(":/?#@&=+[]%;"), max_size=6),
)
@example(secret="p#w\ue000", shape=SHAPES[0], raw="#")
@example(secret="5/w\ue000", shape=SHAPES[0], raw="/")
@example(secret="x@y\ue000", shape=SHAPES[-2], raw="@&=")
@example(secret="@\ue000", shape="postgres://app:{pw}/shop", raw="@")
@example(
    secret="\ue000",
    shape="postgres://app@db/shop?sslmode=require;password={pw}",
    raw="",
)
@example(
    secret="&pool=\ue000", shape="postgres://app@db/shop?sslpassword={pw}", raw="&="
)
def test_no_generated_secret_ever_appears_in_any_output(secret, shape, raw):
    # ``raw``: delimiters left unencoded, as a user pasting a password would.
    url = shape.format(pw=quote(secret, safe=raw))
    texts = [redact_url(url)]
    try:
        entry = database(url)
    except (ValueError, TypeError) as exc:
        texts += exception_texts(exc)
    else:
        texts += [*check_messages(entry), repr(parse_url(url))]
        # Where {pw} is the password, the entry shows it nowhere else and it decodes to
        # itself when correctly encoded. A raw '&' in a query value splits it as libpq
        # does (legal: its tail becomes a parameter, shown nowhere); in a user, host or
        # database name it is no password to libpq, only to a ';'-reader, so only the
        # messages are checked.
        carried = any(
            f in shape for f in (":{pw}@", "&sslpassword={pw}", "?sslpassword={pw}")
        )
        split = "={pw}" in shape and "&" in raw
        if carried and not split:
            public = {
                k: v for k, v in entry.items() if k not in ("PASSWORD", "OPTIONS")
            }
            options = {k: v for k, v in entry["OPTIONS"].items() if k != "sslpassword"}
            texts += [repr(public), repr(options)]
            if "%" not in raw:
                assert secret in (
                    entry["PASSWORD"],
                    entry["OPTIONS"].get("sslpassword"),
                )
    assert_hidden(secret, texts)


@settings(max_examples=150, deadline=None)
@given(
    secret=secrets(),
    options=st.fixed_dictionaries(
        {},
        optional={
            "sslmode": st.sampled_from(["require", "bogus", ""]),
            "connect_timeout": st.sampled_from([5, "abc", "1e400", "-1"]),
            "options": st.sampled_from(["-c x", "-c statement_timeout=30d", "foo"]),
            "port": st.sampled_from(["-1", "5432", "x"]),
        },
    ),
    misplaced=st.sampled_from(
        [
            None,
            "sslmode",
            "connect_timeout",
            "options",
            "port",
            "service",
            "hostaddr",
            "keepalives_idle",
            "target_session_attrs",
            "application_name",
            "isolation_level",
            "require_auth",
            "CONN_MAX_AGE",
            "pool",
            *sorted(conninfo.libpq_keywords() - conninfo.secret_keywords()),
        ]
    ),
    # Forms libpq transforms before quoting (a require_auth '!' stripped)
    form=st.sampled_from(VALUE_FORMS),
)
@example(secret="pw\ue000x", options={}, misplaced="require_auth", form="!{}")
@example(secret="pw\ue000x", options={}, misplaced="require_auth", form="!password,!{}")
def test_check_messages_never_show_the_entrys_secrets(secret, options, misplaced, form):
    # ``misplaced``: the secret pasted into another setting, where no scrubbing can know
    # it is one; only "a value that fails validation is never echoed" keeps it out.
    entry = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "shop",
        "USER": "app",
        "PASSWORD": secret,
        "HOST": "db",
        "PORT": options.pop("port", ""),
        "CONN_MAX_AGE": 600,
        "OPTIONS": {**options, "sslpassword": secret},
    }
    # Not the password itself, which the backstop would mask: the same markers, reversed.
    pasted = form.format("r" + secret[::-1])
    if misplaced == "port":
        entry["PORT"] = pasted
    elif misplaced == "CONN_MAX_AGE":
        entry["CONN_MAX_AGE"] = pasted
    elif misplaced == "pool":
        entry["OPTIONS"]["pool"] = {"min_size": pasted, "timeout": pasted}
    elif misplaced is not None:
        entry["OPTIONS"][misplaced] = pasted
    assert_hidden(secret, check_messages(entry))


# -- property: a parsed URL round-trips through libpq's own conninfo -----------------------------

TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1)
HOSTS = st.one_of(
    st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,20}[A-Za-z0-9])?", fullmatch=True),
    st.sampled_from(["/run/postgresql", "/tmp/Pg Sock"]),
    st.sampled_from(["[::1]", "[fe80::1]"]),
)


@st.composite
def components(draw: st.DrawFn) -> dict[str, object]:
    hosts = draw(st.lists(HOSTS, min_size=1, max_size=3))
    ports = draw(
        st.one_of(
            st.just([""] * len(hosts)),
            st.lists(
                st.integers(1, 65535).map(str), min_size=len(hosts), max_size=len(hosts)
            ),
        )
    )
    return {
        "hosts": hosts,
        "ports": ports,
        "user": draw(TEXT),
        "password": draw(TEXT),
        "dbname": draw(TEXT),
        "application_name": draw(st.one_of(st.none(), TEXT)),
        "options": draw(
            st.one_of(
                st.none(),
                TEXT.map(lambda v: join_options(["-c", f"dbtuning.probe={v}"])),
            )
        ),
    }


def build_url(parts: dict[str, object], scheme: str = "postgres") -> str:
    netloc = ",".join(
        (host if host.startswith("[") else quote(host, safe=""))
        + (f":{port}" if port else "")
        for host, port in zip(parts["hosts"], parts["ports"], strict=True)
    )
    url = (
        f"{scheme}://{quote(parts['user'], safe='')}:{quote(parts['password'], safe='')}"
        f"@{netloc}/{quote(parts['dbname'], safe='')}"
    )
    query = [
        f"{key}={quote(parts[key], safe='')}"
        for key in ("application_name", "options")
        if parts[key] is not None
    ]
    return url + ("?" + "&".join(query) if query else "")


def expected_fields(parts: dict[str, object]) -> dict[str, str]:
    expected = {
        "host": ",".join(h.strip("[]") for h in parts["hosts"]),
        "user": parts["user"],
        "password": parts["password"],
        "dbname": parts["dbname"],
    }
    if any(parts["ports"]):
        expected["port"] = ",".join(parts["ports"])
    for key in ("application_name", "options"):
        if parts[key] is not None:
            expected[key] = parts[key]
    return expected


FIELDS = ("host", "port", "user", "password", "dbname", "application_name", "options")


@settings(max_examples=200, deadline=None)
@given(parts=components())
def test_a_parsed_url_round_trips_through_libpqs_own_conninfo(parts):
    url = build_url(parts)
    entry = database(url, connect_timeout=None)
    conninfo = make_conninfo(
        host=entry["HOST"],
        port=entry["PORT"] or None,
        user=entry["USER"],
        password=entry["PASSWORD"],
        dbname=entry["NAME"],
        application_name=entry["OPTIONS"].get("application_name"),
        options=entry["OPTIONS"].get("options"),
    )
    parsed = conninfo_to_dict(conninfo)
    assert {k: v for k, v in parsed.items() if k in FIELDS} == expected_fields(parts)


@settings(max_examples=200, deadline=None)
@given(parts=components())
def test_our_parse_agrees_with_libpqs_uri_parser(parts):
    # libpq parses postgresql:// URIs itself: both readings must give the same connection.
    ours = parse_url(build_url(parts))
    theirs = conninfo_to_dict(build_url(parts, scheme="postgresql"))
    if set(theirs.get("port", "")) <= {","}:
        theirs.pop("port", None)
    mine = {
        "host": ours.host,
        "port": ours.port,
        "user": ours.user,
        "password": ours.password,
        "dbname": ours.name,
        **ours.options,
    }
    assert {k: v for k, v in mine.items() if v} == {
        k: v for k, v in theirs.items() if v
    }
