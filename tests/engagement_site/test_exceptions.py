from django.core.exceptions import ValidationError
from rest_framework.exceptions import Throttled

from autoengagement.exceptions import ConfigNotFound
from engagement_site.exceptions import DomainError, InvalidCredentials, NotConfigured, api_exception_handler
from wallet.selectors import CustomerNotFound


def test_django_validation_errors_keep_drfs_field_shape():
    response = api_exception_handler(ValidationError({"run_time": ["Bad."], "__all__": ["Whole."]}), {})
    assert response.status_code == 400
    assert response.data == {"run_time": ["Bad."], "non_field_errors": ["Whole."]}


def test_not_found_errors_are_404_with_their_message():
    for error in (ConfigNotFound(), CustomerNotFound()):
        response = api_exception_handler(error, {})
        assert response.status_code == 404
        assert response.data == {"detail": error.message}


def test_invalid_credentials_is_a_401_with_www_authenticate():
    response = api_exception_handler(InvalidCredentials(), {})
    assert response.status_code == 401
    assert response.data == {"detail": "Invalid email or password."}
    assert response["WWW-Authenticate"] == 'Bearer realm="api", X-Session-Token realm="api"'


def test_not_configured_is_a_503():
    response = api_exception_handler(NotConfigured("Wallet certificates are not configured."), {})
    assert response.status_code == 503
    assert response.data == {"detail": "Wallet certificates are not configured."}


def test_a_new_domain_error_answers_with_its_own_status_and_code():
    """A kind of error declares its status and code where it is defined; the handler is not edited for it."""

    class Conflict(DomainError):
        status_code = 409
        code = "conflict"
        default_message = "Already done."

    response = api_exception_handler(Conflict(), {})
    assert response.status_code == 409
    assert response.data == {"detail": "Already done."}
    assert response.data["detail"].code == "conflict"


def test_drf_errors_pass_through_with_their_headers():
    response = api_exception_handler(Throttled(wait=30), {})
    assert response.status_code == 429
    assert response["Retry-After"] == "30"


def test_unexpected_errors_are_left_to_become_a_500():
    assert api_exception_handler(RuntimeError("boom"), {}) is None
