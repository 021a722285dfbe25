from django import forms
from django.core.files.uploadedfile import UploadedFile


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files under one name (``<input type=file multiple>``), as Django's
    documentation shows: the plain FileField keeps only the last one."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("widget", MultipleFileInput())
        super().__init__(**kwargs)

    def clean(self, data, initial=None) -> list[UploadedFile]:
        single_file_clean = super().clean
        if not data:
            single_file_clean(None, initial)  # raises "required" unless the field is optional
            return []
        items = data if isinstance(data, list | tuple) else [data]
        return [single_file_clean(item, initial) for item in items]


class UploadForm(forms.Form):
    # Empty and oversized files are refused by files.services (and the size by
    # files.uploads while streaming) with messages that name the file.
    file = MultipleFileField(label="Files", allow_empty_file=True)


class SearchForm(forms.Form):
    q = forms.CharField(
        label="Search your tablos and files",
        max_length=100,
        error_messages={
            "required": "Type part of a name to search for.",
            "max_length": (
                "Search for at most %(limit_value)d characters (you typed %(show_value)d)."
            ),
        },
    )

    def clean_q(self) -> str:
        # Control characters match no name (the names are stored without them).
        query = "".join(c for c in self.cleaned_data["q"] if c.isprintable()).strip()
        if not query:
            raise forms.ValidationError("Type part of a name to search for.", code="required")
        return query
