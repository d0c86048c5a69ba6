"""A variant behind a real HTTP endpoint (Ray Serve, with its dynamic batching), and the open-loop
load test that measures what users of that endpoint would see (:mod:`hfmagic.serving.api`,
:mod:`hfmagic.serving.loadtest`)."""
