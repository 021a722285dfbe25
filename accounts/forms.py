from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm, BaseUserCreationForm, PasswordResetForm
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives
from django.template import loader

from accounts import mail, selectors

USERNAME_TAKEN = "This username is taken: choose another one."
EMAIL_TAKEN = (
    "An account already uses this email address. Sign in, or reset your password if "
    "you have forgotten it."
)
NOT_CONFIRMED = (
    "Your account is not confirmed yet: open the link we mailed to you, or ask for a new one."
)


class SignupForm(BaseUserCreationForm):
    """Username, address and password (Django's validators) for a new, inactive account."""

    email = forms.EmailField(
        label="Email address",
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
        help_text="We send a link to this address: open it to confirm your account.",
    )

    class Meta(BaseUserCreationForm.Meta):
        model = User
        fields = ("username", "email")

    def clean_username(self) -> str:
        username: str = self.cleaned_data["username"]
        if selectors.username_taken(username):
            raise ValidationError(USERNAME_TAKEN, code="username_taken")
        return username

    def clean_email(self) -> str:
        email: str = self.cleaned_data["email"].strip()
        if selectors.email_taken(email):
            raise ValidationError(EMAIL_TAKEN, code="email_taken")
        return email

    def validate_unique(self) -> None:
        # clean_username checks the name without regard to case, and lets a stale
        # unconfirmed sign-up's name go; the model's exact check would not.
        return


class LoginForm(AuthenticationForm):
    """Django's sign-in form that says when the password is right but the account
    waits for its address to be confirmed (the plain error otherwise)."""

    def get_invalid_login_error(self) -> ValidationError:
        username = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if username and password:
            pending = User.objects.filter(
                username=username, is_active=False, signup__confirmed_at__isnull=True
            ).first()
            # Only someone who knows the password learns the account is pending.
            if pending is not None and pending.check_password(password):
                self.pending_email = pending.email
                return ValidationError(NOT_CONFIRMED, code="not_confirmed")
        return super().get_invalid_login_error()


class ResendConfirmationForm(forms.Form):
    email = forms.EmailField(
        label="Email address",
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )


class TruthfulPasswordResetForm(PasswordResetForm):
    """Django's reset form, whose sending raises MailNotSent instead of logging and
    carrying on; with no account for the address it checks the mail server instead,
    so an outage looks the same whether the address is known or not."""

    def save(self, *args: Any, **kwargs: Any) -> None:
        self._sent = 0
        super().save(*args, **kwargs)
        if self._sent == 0:
            mail.check_server(purpose="password_reset")

    def send_mail(
        self,
        subject_template_name: str,
        email_template_name: str,
        context: dict[str, Any],
        from_email: str | None,
        to_email: str,
        html_email_template_name: str | None = None,
    ) -> None:
        subject = "".join(loader.render_to_string(subject_template_name, context).splitlines())
        message = EmailMultiAlternatives(
            subject, loader.render_to_string(email_template_name, context), from_email, [to_email]
        )
        if html_email_template_name is not None:
            message.attach_alternative(
                loader.render_to_string(html_email_template_name, context), "text/html"
            )
        mail.send(message=message, purpose="password_reset", user_id=context["user"].pk)
        self._sent += 1
