"""The audit of one finished run: insider attacks, membership inference, the findings in plain sentences and the
audit's HTML page."""
