from django.contrib.auth import views as auth_views
from django.urls import path

from profiles import views

urlpatterns = [
    path("", views.home, name="home"),
    path("signup/", views.signup, name="signup"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("profile/", views.profile_edit, name="profile-edit"),
    path("profile/email/", views.profile_email, name="profile-email"),
    path("profile/photo/remove/", views.profile_remove_photo, name="profile-remove-photo"),
    path("profile/notices/<int:pk>/", views.notice_detail, name="notice-detail"),
    path("verify-email/<str:token>/", views.verify_email, name="verify-email"),
    path("u/<str:username>/", views.profile_detail, name="profile-detail"),
    path("u/<str:username>/report/", views.profile_report, name="profile-report"),
]
