from engagement_site.exceptions import ObjectNotFound


class ConfigNotFound(ObjectNotFound):
    default_message = "This business has no auto-engagement config yet; POST one first."
