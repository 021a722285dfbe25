"""Browser checks shared by the layout tests: Content Security Policy violations and
elements that stick out of the window sideways."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import connections
from playwright.sync_api import BrowserContext, Page, sync_playwright

from tests.browser.test_e2e import CHROMIUM_ARGS

# Runs before any script of each page (an init script is not subject to the page's CSP).
_RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push({
    directive: e.effectiveDirective, blocked: e.blockedURI, sample: e.sample,
    source: e.sourceFile, line: e.lineNumber,
  });
});
"""


def record_csp_violations(context: BrowserContext) -> None:
    """Every page of ``context`` keeps the CSP violations it reports, for
    :func:`csp_violations`."""
    context.add_init_script(_RECORD_VIOLATIONS)


def csp_violations(page: Page) -> list[dict[str, Any]]:
    return page.evaluate("() => window.__cspViolations")


def overflowing(page: Page) -> list[str]:
    """Visible elements reaching past the window's left or right edge, other than those
    inside a container that scrolls sideways (there the reader can scroll to them)."""
    return page.evaluate(
        """() => {
          const width = document.documentElement.clientWidth;
          const scrolls = (e) => ['auto', 'scroll'].includes(getComputedStyle(e).overflowX);
          const inScroller = (e) => {
            for (let p = e.parentElement; p && p !== document.body; p = p.parentElement) {
              if (scrolls(p)) return true;
            }
            return false;
          };
          const name = (e) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
            + [...e.classList].map((c) => '.' + c).join('');
          return [...document.body.querySelectorAll('*')].filter((e) => {
            const r = e.getBoundingClientRect();
            const style = getComputedStyle(e);
            if (!r.width || !r.height || style.visibility === 'hidden') return false;
            return (r.right > width + 1 || r.left < -1) && !inScroller(e);
          }).map((e) => {
            const r = e.getBoundingClientRect();
            return `${name(e)} [${Math.round(r.left)}, ${Math.round(r.right)}]`;
          });
        }"""
    )


# Runs in every document before the page's own scripts: a CSP violation is
# reported to the test, whatever page (or frame) it happens on.
CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.reportCspViolation(
    `${event.violatedDirective} blocked ${event.blockedURI || "inline"} on ${document.URL}`
  );
});
"""


@dataclass
class Browser:
    """One Chromium page whose CSP violations are collected; screenshots go to ``shots``
    (the test's own output directory)."""

    page: Page
    base: str
    shots: Path
    violations: list[str] = field(default_factory=list)

    def shot(self, name: str, *, full_page: bool = True) -> None:
        self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=full_page)

    def assert_no_violations(self) -> None:
        assert self.violations == []


@contextmanager
def chromium(base: str, shots: Path, *, width: int = 1440) -> Iterator[Browser]:
    """Chromium with the CSP violation listener in every document; closed at the end."""
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
        )
        context = browser.new_context(viewport={"width": width, "height": 900})
        context.set_default_timeout(20_000)
        session = Browser(page=context.new_page(), base=base, shots=shots)
        context.expose_function(
            "reportCspViolation", lambda report: session.violations.append(report)
        )
        context.add_init_script(CSP_LISTENER)
        session.page.on(
            "console",
            lambda message: (
                session.violations.append(message.text)
                if message.type == "error" and "Content Security Policy" in message.text
                else None
            ),
        )
        try:
            yield session
        finally:
            context.close()
            browser.close()
            # ORM calls made while Playwright's sync API ran got connections of
            # their own context; close them, or one outlives the test database.
            connections.close_all()


def no_horizontal_overflow(page: Page) -> bool:
    return page.evaluate("() => document.scrollingElement.scrollWidth <= window.innerWidth")
