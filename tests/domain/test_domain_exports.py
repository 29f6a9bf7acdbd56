import ehr_bridge.domain as domain


def test_public_surface_is_exactly_all():
    public = {name for name in vars(domain) if not name.startswith("_")}
    modules = {
        "codes",
        "facts",
        "fhir_checks",
        "icd10",
        "ids",
        "measures",
        "nhs_number",
        "primitives",
        "referral",
        "risk",
        "session",
        "validate",
    }
    assert public - modules == set(domain.__all__)


def test_every_export_has_a_docstring():
    for name in domain.__all__:
        obj = getattr(domain, name)
        if callable(obj):
            assert obj.__doc__, name
