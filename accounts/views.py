from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from accounts import services
from accounts.forms import (
    USERNAME_TAKEN,
    LoginForm,
    ResendConfirmationForm,
    SignupForm,
    TruthfulPasswordResetForm,
)
from accounts.mail import MailNotSent

MAIL_FAILED = (
    "We could not send the email just now because of a problem on our side. "
    "Please try again in a few minutes; if it keeps failing, contact the site's operators."
)


def _confirm_url(request: HttpRequest) -> Callable[[str], str]:
    return lambda token: request.build_absolute_uri(reverse("accounts:confirm", args=[token]))


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("tablos:list")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = services.signup_create(
                username=form.cleaned_data["username"],
                email=form.cleaned_data["email"],
                password=form.cleaned_data["password1"],
                confirm_url=_confirm_url(request),
            )
        except services.NameTaken:
            form.add_error("username", USERNAME_TAKEN)
        except MailNotSent:
            messages.error(
                request,
                "Your account is created, but we could not send the confirmation email. "
                "Ask for a new link in a few minutes below; if it keeps failing, contact "
                "the site's operators.",
            )
            return redirect("accounts:resend")
        else:
            request.session["signup_email"] = user.email
            return redirect("accounts:signup_done")
    status = 400 if request.method == "POST" else 200
    return render(request, "accounts/signup.html", {"form": form}, status=status)


def _check_your_email(template: str) -> Callable[[HttpRequest], HttpResponse]:
    """A "check your email" page naming the address the session just used."""

    @require_http_methods(["GET"])
    def view(request: HttpRequest) -> HttpResponse:
        return render(request, template, {"email": request.session.get("signup_email")})

    return view


signup_done = _check_your_email("accounts/signup_done.html")
resend_done = _check_your_email("accounts/resend_done.html")


@require_http_methods(["GET", "POST"])
def confirm(request: HttpRequest, token: str) -> HttpResponse:
    """GET shows a button and changes nothing (mail scanners open links); POST confirms."""
    if request.method == "GET":
        return render(request, "accounts/confirm.html", {"token": token})
    try:
        services.signup_confirm(token=token)
    except services.ConfirmationFailed as failure:
        return render(
            request, "accounts/confirm_failed.html", {"reason": failure.reason}, status=400
        )
    messages.success(request, "Your email address is confirmed. You can sign in now.")
    return redirect("login")


@require_http_methods(["GET", "POST"])
def resend(request: HttpRequest) -> HttpResponse:
    form = ResendConfirmationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.confirmation_resend(
                email=form.cleaned_data["email"], confirm_url=_confirm_url(request)
            )
        except MailNotSent:
            form.add_error(None, MAIL_FAILED)
            return render(request, "accounts/resend.html", {"form": form}, status=503)
        request.session["signup_email"] = form.cleaned_data["email"]
        return redirect("accounts:resend_done")
    status = 400 if request.method == "POST" else 200
    return render(request, "accounts/resend.html", {"form": form}, status=status)


class LoginView(auth_views.LoginView):
    authentication_form = LoginForm
    redirect_authenticated_user = True


class PasswordResetView(auth_views.PasswordResetView):
    """Django's reset view, which says so when the mail could not be sent."""

    form_class = TruthfulPasswordResetForm

    def form_valid(self, form: TruthfulPasswordResetForm) -> HttpResponse:  # type: ignore[override]
        try:
            return super().form_valid(form)
        except MailNotSent:
            form.add_error(None, MAIL_FAILED)
            response = self.render_to_response(self.get_context_data(form=form))
            response.status_code = 503
            return response
