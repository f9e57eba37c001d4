"""Template tags for showing images to moderators (``{% load moderation_wellness %}``):
``{% blur_class %}`` for the admin's ``<body>``, ``{% reviewed_image url alt %}`` for an image."""

from __future__ import annotations

from django import template
from django.utils.html import format_html

from moderation import wellness

register = template.Library()


@register.simple_tag(takes_context=True)
def blur_class(context) -> str:
    """``blur-images`` when the signed-in moderator has images blurred until clicked."""
    request = context.get("request")
    user = getattr(request, "user", None)
    return "blur-images" if user is None or wellness.blurs_images(user) else ""


@register.simple_tag(takes_context=True)
def images_viewed_today(context) -> int:
    request = context.get("request")
    user = getattr(request, "user", None)
    return wellness.views_today(user) if user is not None and user.is_authenticated else 0


@register.simple_tag
def reviewed_image(url: str, alt: str = "", size: int | None = None, element_id: str = "") -> str:
    """An image as moderators see it: blurred and greyscale until clicked (``wellness.css``,
    ``wellness.js``), ``size`` px square when given (a thumbnail)."""
    return reviewed_img(url, alt=alt, size=size, element_id=element_id)


def reviewed_img(url: str, *, alt: str = "", size: int | None = None, element_id: str = "") -> str:
    """The markup of ``reviewed_image``, for admin cells built in Python."""
    # A class per size, not a style="" attribute: the Content Security Policy allows no
    # inline styles (wellness.css has the sizes).
    sized = f" mod-size-{size}" if size else ""
    return format_html(
        '<img class="mod-img{}" src="{}" alt="{}" title="{}" tabindex="0" role="button" '
        'aria-pressed="false"{}>',
        sized,
        url,
        alt,
        "Click to reveal",
        format_html(' id="{}"', element_id) if element_id else "",
    )
