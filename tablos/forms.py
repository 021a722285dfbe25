from django import forms

from tablos.models import Tablo


class TabloForm(forms.ModelForm):
    class Meta:
        model = Tablo
        fields = ["name"]
        labels = {"name": "Name"}

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give the tablo a name.")
        return name
