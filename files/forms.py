from django import forms


class UploadForm(forms.Form):
    # Empty and oversized files are refused by files.services (and the size by
    # files.uploads while streaming) with messages that name the file.
    file = forms.FileField(label="File", allow_empty_file=True)
