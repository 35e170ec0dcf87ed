from hypothesis import settings

# Property tests run beside real fleets on 2 cores: time per example is noise, not a bug.
settings.register_profile("phalanx", deadline=None, max_examples=60)
settings.load_profile("phalanx")
