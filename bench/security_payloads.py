"""The XSS payloads of bench/security.py (RELIABILITY F10): well-known vectors, each carrying a
unique marker (`xssm000`…) so that whatever survives, runs or is requested can be traced back to
the payload it came from.

Every vector calls `alert`, `confirm` or `prompt` with its marker when it runs, carries the marker
in an attribute or in script/style text when it survives as markup, or points a URL at it when it
makes the browser fetch something. The vectors that carry a tag are also sent twice more behind
the two classic break-outs: out of a quoted attribute (`"'>`) and out of the raw-text and RCDATA
elements a value may land in (`</textarea></title>…`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

MARKER = re.compile(r"xssm\d{3}")
# Where the CSS and tracking vectors point: a closed port on loopback, so nothing is ever fetched
# from outside even if a vector survived.
SINK = "http://127.0.0.1:9"

ATTRIBUTE_BREAKOUT = "\"'>"
ELEMENT_BREAKOUT = "</textarea></title></option></pre></code></script></style>"


@dataclass(frozen=True)
class Payload:
    number: int
    category: str
    text: str

    @property
    def marker(self) -> str:
        return f"xssm{self.number:03d}"

    def json_form(self) -> str:
        """The payload as it reads inside a JSON string (the body previews show JSON)."""
        return json.dumps(self.text, ensure_ascii=False)[1:-1]


# (category, template); `{m}` is the marker, `{s}` the sink URL.
VECTORS: tuple[tuple[str, str], ...] = (
    # --- script tags
    ("script tag", "<script>alert('{m}')</script>"),
    ("script tag", "<SCRIPT SRC=//127.0.0.1:9/{m}.js></SCRIPT>"),
    ("script tag", "<script src=\"data:text/javascript,alert('{m}')\"></script>"),
    ("script tag", "<ScRiPt>prompt('{m}')</sCrIpT>"),
    ("script tag", "<script>/*</script><script>*/confirm('{m}')</script>"),
    ("script tag", "<script type=module>alert('{m}')</script>"),
    ("script tag", "<script>window['al'+'ert']('{m}')</script>"),
    ("script tag", "<script\x0c>alert('{m}')</script>"),
    # --- event handlers
    ("event handler", "<img src=x onerror=alert('{m}')>"),
    ("event handler", '<img src="x" id="{m}" onerror="alert(\'{m}\')">'),
    ("event handler", "<body onload=alert('{m}')>"),
    ("event handler", "<svg onload=alert('{m}')>"),
    ("event handler", "<svg/onload=alert('{m}')>"),
    ("event handler", "<input autofocus onfocus=alert('{m}')>"),
    ("event handler", "<details open ontoggle=alert('{m}')>"),
    ("event handler", "<video><source onerror=alert('{m}')></video>"),
    ("event handler", "<audio src=x onerror=alert('{m}')>"),
    ("event handler", "<marquee onstart=alert('{m}')>{m}</marquee>"),
    ("event handler", "<select autofocus onfocus=alert('{m}')></select>"),
    ("event handler", "<textarea autofocus onfocus=alert('{m}')></textarea>"),
    ("event handler", "<iframe onload=alert('{m}')></iframe>"),
    ("event handler", "<div onmouseover=alert('{m}')>hover me</div>"),
    ("event handler", "<object data=x onerror=alert('{m}')></object>"),
    ("event handler", "<img src=x:x onerror=alert&#40;'{m}'&#41;>"),
    ("event handler", "<img src=`x` onerror=alert('{m}')>"),
    ("event handler", "<style onload=alert('{m}')></style>"),
    ("event handler", "<x contenteditable autofocus onfocus=alert('{m}')>x</x>"),
    ("event handler", "<body onpageshow=alert('{m}')>"),
    ("event handler", "<dialog open onclose=alert('{m}')>x</dialog>"),
    ("event handler", "<a id={m} href=# onclick=alert('{m}')>click</a>"),
    ("event handler", "<img srcset=\"x 1x, {s}/{m} 2x\" onerror=alert('{m}')>"),
    ("event handler", "<image src=x onerror=alert('{m}')>"),
    ("event handler", "<img\x0bsrc=x\x0bonerror=alert('{m}')>"),
    ("event handler", "<img src=x onerror=\"&#x61;lert('{m}')\">"),
    ("event handler", "<img src=x onerror=\\u0061lert('{m}')>"),
    # --- javascript: and data: URLs
    ("javascript url", "<a href=\"javascript:alert('{m}')\">{m}</a>"),
    ("javascript url", "<a href=\"JaVaScRiPt:alert('{m}')\">x</a>"),
    ("javascript url", "<a href=\"jav&#x09;ascript:alert('{m}')\">x</a>"),
    ("javascript url", "<a href=\"&#106;avascript:alert('{m}')\">x</a>"),
    ("javascript url", "<iframe src=\"javascript:alert('{m}')\"></iframe>"),
    ("javascript url", "<iframe srcdoc=\"<script>alert('{m}')</script>\"></iframe>"),
    ("javascript url", "<embed src=\"javascript:alert('{m}')\">"),
    ("javascript url", "<object data=\"javascript:alert('{m}')\"></object>"),
    ("javascript url", "<meta http-equiv=refresh content=\"0;url=javascript:alert('{m}')\">"),
    ("javascript url", "<base href=\"javascript:alert('{m}')//\">"),
    ("javascript url", "<form><button formaction=javascript:alert('{m}')>x</button></form>"),
    ("javascript url", "<form action=\"javascript:alert('{m}')\"><input type=submit></form>"),
    (
        "javascript url",
        '<iframe src="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==" name={m}>',
    ),
    ("javascript url", "javascript:alert('{m}')"),
    ("javascript url", "data:text/html,<script>alert('{m}')</script>"),
    ("javascript url", "java\tscript:alert('{m}')"),
    # --- SVG and MathML (including known mutation-XSS shapes)
    ("svg/mathml", "<svg><script>alert('{m}')</script></svg>"),
    ("svg/mathml", "<svg><animate onbegin=alert('{m}') attributeName=x dur=1s>"),
    (
        "svg/mathml",
        "<svg><a xlink:href=\"javascript:alert('{m}')\"><text x=20 y=20>{m}</text></a></svg>",
    ),
    ("svg/mathml", "<svg><foreignObject><img src=x onerror=alert('{m}')></foreignObject></svg>"),
    ("svg/mathml", "<svg><set attributeName=onmouseover to=alert('{m}')>"),
    ("svg/mathml", "<math><mtext><table><mglyph><style><img src=x onerror=alert('{m}')>"),
    ("svg/mathml", "<math href=\"javascript:alert('{m}')\">CLICK</math>"),
    ("svg/mathml", "<noscript><p title=\"</noscript><img src=x onerror=alert('{m}')>\">"),
    ("svg/mathml", "<svg></p><style><a id=\"</style><img src=1 onerror=alert('{m}')>\">"),
    ("svg/mathml", "<svg><style>@import '{s}/{m}';</style></svg>"),
    ("svg/mathml", "<svg><use href=\"data:image/svg+xml,<svg id='x'></svg>#{m}\"></use></svg>"),
    ("svg/mathml", "<math><maction actiontype=statusline xlink:href=javascript:alert('{m}')>"),
    # --- attribute break-outs written out
    ("attribute breakout", "\" onmouseover=\"alert('{m}')"),
    ("attribute breakout", "' onfocus='alert(\"{m}\")' autofocus='"),
    ("attribute breakout", '" autofocus onfocus="alert(\'{m}\')" x="'),
    ("attribute breakout", "` onclick=alert('{m}') `"),
    ("attribute breakout", "\"><img src=x onerror=alert('{m}')>"),
    ("attribute breakout", "'><svg onload=alert('{m}')>"),
    ("attribute breakout", "\" style=\"background:url(javascript:alert('{m}'))"),
    ("attribute breakout", "</textarea><script>alert('{m}')</script>"),
    ("attribute breakout", "</title><script>alert('{m}')</script>"),
    ("attribute breakout", "</script><script>alert('{m}')</script>"),
    ("attribute breakout", "--><script>alert('{m}')</script><!--"),
    ("attribute breakout", "]]><script>alert('{m}')</script>"),
    ("attribute breakout", "</option></select><img src=x onerror=alert('{m}')>"),
    ("attribute breakout", "<!--<img src=\"--><img src=x onerror=alert('{m}')//\">"),
    ("attribute breakout", "\\\"}]}</code></pre><img src=x onerror=alert('{m}')>"),
    # --- template injection (server- and client-side template engines)
    ("template injection", "{{constructor.constructor('alert(\"{m}\")')()}}"),
    ("template injection", "{{7*7}} {m}"),
    ("template injection", "{% debug %} {m} {{ settings.SECRET_KEY }}"),
    ("template injection", "${alert('{m}')}"),
    ("template injection", "<%= alert('{m}') %>"),
    ("template injection", "{{'a'.constructor.prototype.charAt=[].join;$eval('alert(\"{m}\")')}}"),
    ("template injection", "#{alert('{m}')}"),
    ("template injection", "{{ request.user.password }} {m} {# x #}"),
    ("template injection", "{% include 'base.html' %} {m}"),
    ("template injection", "[[${T(java.lang.Runtime)}]] {m}"),
    # --- Unicode and encoding tricks
    ("unicode", "＜script＞alert('{m}')＜/script＞"),
    ("unicode", "\\u003cscript\\u003ealert('{m}')\\u003c/script\\u003e"),
    ("unicode", "<scr\u200bipt>alert('{m}')</scr\u200bipt>"),
    ("unicode", "\u202e>tpircs/<)'{m}'(trela>tpircs<"),
    ("unicode", "%3Cscript%3Ealert('{m}')%3C/script%3E"),
    ("unicode", "&lt;script&gt;alert('{m}')&lt;/script&gt;"),
    ("unicode", "\\x3cscript\\x3ealert('{m}')\\x3c/script\\x3e"),
    ("unicode", "<ſcript>alert('{m}')</ſcript>"),
    ("unicode", "+ADw-script+AD4-alert('{m}')+ADw-/script+AD4-"),
    ("unicode", "<scrİpt>alert('{m}')</scrİpt>"),
    ("unicode", "\u2028<script>alert('{m}')</script>\u2029"),
    ("unicode", "\ufeff<img src=x onerror=alert('{m}')>"),
    ("unicode", "&#60;img src=x onerror=alert('{m}')&#62;"),
    # --- htmx attributes (htmx is on every page)
    ("htmx", '<div hx-get="/{m}" hx-trigger="load">x</div>'),
    ("htmx", "<button hx-on:click=\"alert('{m}')\">x</button>"),
    ("htmx", "<div hx-on::load=\"alert('{m}')\">x</div>"),
    ("htmx", "<img src=x hx-on:htmx:load=\"alert('{m}')\">"),
    ("htmx", '<div hx-post="/notifications/" hx-trigger="load" hx-vals=\'{"x":"{m}"}\'>x</div>'),
    ("htmx", '<div hx-vals=\'js:{a:alert("{m}")}\' hx-get="/{m}" hx-trigger="load">x</div>'),
    ("htmx", '<div data-hx-get="/{m}" data-hx-trigger="load">x</div>'),
    ("htmx", '<form hx-post="{s}/{m}" hx-trigger="load"></form>'),
    ("htmx", '<div hx-headers=\'js:{a:alert("{m}")}\' hx-get="/{m}" hx-trigger="load">x</div>'),
    ("htmx", '<div hx-swap-oob="true" id="main">{m}</div>'),
    ("htmx", '<div hx-get="/{m}" hx-trigger="load" hx-target="body" hx-swap="innerHTML">'),
    ("htmx", '<a hx-boost="true" href="/{m}" hx-trigger="load">x</a>'),
    ("htmx", "<div hx-on-htmx-load=\"alert('{m}')\">x</div>"),
    # --- CSS injection
    ("css", "<style>@import '{s}/{m}.css';</style>"),
    ("css", '<style>body{background:url("{s}/{m}")}</style>'),
    ("css", '<div style="background-image:url({s}/{m})">x</div>'),
    ("css", "<div style=\"width:expression(alert('{m}'))\">x</div>"),
    ("css", '<link rel=stylesheet href="{s}/{m}.css">'),
    ("css", "</style><style>*{color:red}</style>{m}"),
    ("css", '<style>input[value^="a"]{background:url({s}/{m})}</style>'),
    ("css", '<div id={m} style="position:fixed;inset:0;background:red">overlay</div>'),
    ("css", "<p style=x:expr/**/ession(alert('{m}'))>x</p>"),
    ("css", '<div style="--x:url({s}/{m});background:var(--x)">x</div>'),
    # --- other markup that must not survive
    ("other markup", '<img src="{s}/{m}.png">'),
    ("other markup", '<form action="{s}/{m}"><input name=password></form>'),
    ("other markup", "<plaintext>{m}"),
    ("other markup", "<xmp><img src=x onerror=alert('{m}')></xmp>"),
    ("other markup", "<template><img src=x onerror=alert('{m}')></template>"),
    ("other markup", '<a href="https://example.org/{m}" target=_blank rel=opener>link</a>'),
    ("other markup", '<object type=text/x-scriptlet data="{s}/{m}"></object>'),
    ("other markup", '<meta http-equiv="set-cookie" content="sessionid={m}">'),
    ("other markup", "<input type=hidden name=csrfmiddlewaretoken value={m}>"),
    ("other markup", '<iframe src="/admin/" name={m}></iframe>'),
    # --- log injection and JSON contexts
    ("log/json", "\r\nINFO forged log line {m}\r\n"),
    ("log/json", "\"}; alert('{m}'); var x={\""),
    ("log/json", "</script><script>alert('{m}')</script><script>"),
    ("log/json", "'-alert('{m}')-'"),
    ("log/json", "\\'-alert('{m}')//"),
)

# The vectors that open a tag are also sent behind each break-out.
_TAGGED = re.compile(r"<[a-zA-Z]")


def build_payloads() -> list[Payload]:
    templates: list[tuple[str, str]] = list(VECTORS)
    for category, template in VECTORS:
        if template.startswith("<") and _TAGGED.match(template):
            templates.append((f"{category} (attribute break-out)", ATTRIBUTE_BREAKOUT + template))
    for category, template in VECTORS:
        if category in ("script tag", "svg/mathml", "htmx") and _TAGGED.match(template):
            templates.append((f"{category} (element break-out)", ELEMENT_BREAKOUT + template))
    payloads = []
    for number, (category, template) in enumerate(templates):
        marker = f"xssm{number:03d}"
        text = template.replace("{m}", marker).replace("{s}", SINK)
        payloads.append(Payload(number, category, text))
    texts = [p.text for p in payloads]
    assert len(set(texts)) == len(texts), "payloads must be distinct"
    assert all(p.marker in p.text for p in payloads)
    return payloads


def batches(payloads: list[Payload], *, max_chars: int, separator: str) -> list[list[Payload]]:
    """Consecutive groups whose joined text stays within `max_chars`."""
    groups: list[list[Payload]] = [[]]
    size = 0
    for payload in payloads:
        extra = len(payload.text) + (len(separator) if groups[-1] else 0)
        if groups[-1] and size + extra > max_chars:
            groups.append([])
            size = 0
            extra = len(payload.text)
        groups[-1].append(payload)
        size += extra
    return groups


def joined(group: list[Payload], separator: str) -> str:
    return separator.join(p.text for p in group)
