"""Structure builders without AiiDA: the argyrodite family (``argyrodite``) and rattled or strained variants
(``variants``); the calcfunctions ``mlcampaign.structures.*`` wrap them."""
