"""Testing support for backend authors: the conformance suite
(:mod:`.conformance`) and its pytest plug-in (:mod:`.pytest_plugin`)."""
