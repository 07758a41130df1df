from django.contrib import admin

from .models import Connection, Membership, Team


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "created_at"]
    prepopulated_fields = {"slug": ["name"]}
    search_fields = ["name", "slug"]
    inlines = [MembershipInline]


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    # The key itself is managed from the team's connections page, never here.
    list_display = ["label", "team", "base_url", "masked_key", "updated_at"]
    list_filter = ["team"]
    readonly_fields = ["masked_key"]
    fields = ["team", "label", "base_url", "masked_key"]
