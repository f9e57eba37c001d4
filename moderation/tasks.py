"""Background tasks: thin ``django.tasks`` wrappers around services (arguments are JSON)."""

from django.tasks import task

from moderation import services


@task
def sweep_task(fingerprint_ids: list[int] | None = None) -> dict:
    """Take down stored images that match the given (or all) banned fingerprints."""
    result = services.sweep_banned_matches(fingerprint_ids=fingerprint_ids)
    return {"checked": result.checked, "taken_down": len(result.taken_down)}


@task
def recheck_image_task(model_label: str, pk: int) -> bool:
    """Re-check one stored image after its upload committed (closes the upload/flag race)."""
    from django.apps import apps

    instance = apps.get_model(model_label)._default_manager.filter(pk=pk).first()
    if instance is None:
        return False
    return services.recheck_stored_image(instance=instance)
