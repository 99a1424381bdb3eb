"""mkdocs hooks: a raw reST role left in a docstring (``:func:`x```, ``:class:`X```...) renders as
text; with ``mkdocs build --strict`` it is an error. Cross-references are Markdown
(``[`name`][spikebridge.module.name]``, mkdocs-autorefs)."""

import logging
import re

log = logging.getLogger("mkdocs.hooks.rest_roles")
REST_ROLE = re.compile(r":(?:py:)?(?:func|meth|class|mod|attr|data|obj|exc|ref|term|doc):(?:<code>|`)")


def on_page_content(html: str, page, config, files) -> str:
    for match in REST_ROLE.finditer(html):
        context = re.sub(r"<[^>]+>", "", html[match.start() : match.start() + 80])
        log.warning("%s: raw reST role %r (write a Markdown cross-reference)", page.file.src_path, context)
    return html
