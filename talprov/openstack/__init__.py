"""OpenStack driver: Talos images in Glance, Nova servers with user_data, tagged ports."""
