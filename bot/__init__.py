"""sms-send: a Slack app that sends WhatCounts SMS campaigns once approvers agree."""
