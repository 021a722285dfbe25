from django.urls import path

from accounts import views

app_name = "accounts"
urlpatterns = [
    path("signup/", views.signup, name="signup"),
    path("signup/done/", views.signup_done, name="signup_done"),
    path("confirm/<str:token>/", views.confirm, name="confirm"),
    path("confirm-again/", views.resend, name="resend"),
    path("confirm-again/done/", views.resend_done, name="resend_done"),
]

# Django's own URL names (login, password_reset), with this app's views: config/urls.py
# puts these before django.contrib.auth.urls, whose other views (reset confirm, logout...)
# are used as they are.
auth_urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("password_reset/", views.PasswordResetView.as_view(), name="password_reset"),
]
