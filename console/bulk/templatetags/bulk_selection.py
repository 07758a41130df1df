"""The runs page's side of a bulk retry's selection, under the names
`console.bulk.selection` defines (the preview and the confirmation read them):

- `{% bulk_bar form.data page.runs as bar %}`: the bulk bar's form id, the
  scope its buttons name and its hidden inputs (the filter, the page's runs);
- `{{ selection.fields|hidden_inputs }}`: a selection carried forward;
- `{% matching_fields group=key %}`: the hidden inputs of "all runs matching"
  a filter, for a link to the preview from elsewhere (the failure inbox).
"""

from dataclasses import dataclass

from django import template
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from console.bulk.selection import FORM_ID, SCOPE_FIELD, Scope, Selection, runs_page_fields

register = template.Library()


@register.filter
def hidden_inputs(fields) -> SafeString:
    """A hidden input per (name, value) pair, names and values escaped. The
    runs page sends 50 ids under one name: the name is escaped once, and ids,
    being integers, need no escaping."""
    names: dict[str, str] = {}
    inputs = []
    for name, value in fields:
        if name not in names:
            names[name] = escape(name)
        shown = value if type(value) is int else escape(value)
        inputs.append(f'<input type="hidden" name="{names[name]}" value="{shown}">')
    return mark_safe("".join(inputs))  # noqa: S308 (every name and value escaped, or an int)


@dataclass(frozen=True)
class BulkBar:
    hidden_inputs: SafeString
    form_id: str = FORM_ID
    scope_field: str = SCOPE_FIELD
    picked: str = Scope.PICKED.value
    page: str = Scope.PAGE.value
    all_matching: str = Scope.ALL_MATCHING.value


@register.simple_tag
def bulk_bar(filter_data, page_runs) -> BulkBar:
    return BulkBar(hidden_inputs=hidden_inputs(runs_page_fields(filter_data, page_runs)))


@register.simple_tag
def matching_fields(**filters) -> SafeString:
    """The hidden inputs that select every run matching `filters` (runs page
    filter names and values) for the bulk retry preview."""
    pairs = tuple((name, str(value)) for name, value in filters.items())
    return hidden_inputs(Selection(Scope.ALL_MATCHING, filter=pairs).fields())


@register.simple_tag
def item_state_label(job, state) -> str:
    """An item's state in the words of its job's kind ("Webhook replayed")."""
    return job.item_state_label(state)
