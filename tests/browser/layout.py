"""Browser checks shared by the layout tests: Content Security Policy violations and
elements that stick out of the window sideways."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import BrowserContext, Page

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
