"""A send request's life cycle: the form's choices, the state machine, what Slack still has to be shown."""
