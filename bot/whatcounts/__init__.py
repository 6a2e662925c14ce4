"""WhatCounts: the REST client and its typed outcomes, the SMS message catalogue, segment counting."""
