"""Pure cache policy: keys, normalization, eligibility, freshness, controls and headers. No I/O."""
