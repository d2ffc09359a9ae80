import json

from django.contrib import admin

from .masking import mask_ids_in
from .models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only, with ID numbers masked: events keep full values so the chain proves
    what was written, but the admin is not the audited reveal."""

    list_display = [
        "seq",
        "created_at",
        "actor_username",
        "action",
        "object_type",
        "object_id",
        "masked_repr",
        "from_state",
        "to_state",
    ]
    list_filter = ["action", "object_type"]
    search_fields = ["object_id", "actor_username"]
    fields = [
        "seq",
        "created_at",
        "actor_username",
        "action",
        "object_type",
        "object_id",
        "masked_repr",
        "from_state",
        "to_state",
        "reason",
        "masked_changes",
        "client_ip",
        "prev_hash",
        "hash",
    ]
    readonly_fields = fields

    @admin.display(description="对象")
    def masked_repr(self, event):
        return mask_ids_in(event.object_repr)

    @admin.display(description="变更")
    def masked_changes(self, event):
        return json.dumps(mask_ids_in(event.changes), ensure_ascii=False, indent=1)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
