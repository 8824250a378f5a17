"""Reminder templates: languages, formatting, length limits, escaping, loud failures."""

from __future__ import annotations

from pathlib import Path

import pytest
from jinja2 import UndefinedError, meta

from stealth_recovery.core.settings import get_settings
from stealth_recovery.notifications import rendering
from stealth_recovery.notifications.rendering import (
    GSM7_CHARACTERS,
    SMS_MAX_CHARS,
    available_languages,
    choose_language,
    render,
    render_email,
    render_sms,
    render_whatsapp,
    template_variables,
    whatsapp_template_body,
)
from stealth_recovery.notifications.sender import ProviderNotifier, TransientRetry
from tests.support.builders import PAY_URL, message_context
from tests.support.providers import FakeProviders

TEMPLATES = sorted(
    str(path.relative_to(rendering.TEMPLATE_DIR))
    for language in ("en", "es")
    for path in (rendering.TEMPLATE_DIR / language).iterdir()
)


class TestChooseLanguage:
    @pytest.mark.parametrize(
        ("locale", "language"),
        [
            ("en", "en"),
            ("en-GB", "en"),
            ("es", "es"),
            ("es-ES", "es"),
            ("es_MX", "es"),
            ("ES", "es"),
            ("fr-FR", "en"),
            ("", "en"),
            (None, "en"),
        ],
    )
    def test_picks_the_folder_with_fallback_to_english(
        self, locale: str | None, language: str
    ) -> None:
        assert choose_language(locale) == language

    def test_english_and_spanish_exist(self) -> None:
        assert {"en", "es"} <= available_languages()


class TestEmail:
    def test_english_soft_decline_asks_to_retry(self) -> None:
        # Given a soft decline for a customer in New York
        email = render_email(message_context())

        # Then subject and both bodies carry the amount, merchant, link, local expiry, number
        assert email.subject == "Your payment of €49.99 to Acme Outdoor didn't go through"
        for body in (email.text, email.html):
            assert "€49.99" in body
            assert "Acme Outdoor" in body
            assert PAY_URL in body
            assert "December 5, 2026, 10:00\u202fAM EST" in body
            assert "Reminder 1 of 3" in body
            assert "try the payment again" in body
        assert email.text.startswith("Hi Ana,")
        assert '<html lang="en">' in email.html

    def test_spanish_customer_action_asks_to_update_the_card(self) -> None:
        email = render_email(
            message_context(
                locale="es-MX",
                timezone="America/Mexico_City",
                decline_category="customer_action",
                amount_minor=125000,
                currency="MXN",
            )
        )

        assert email.subject == (
            "Acción necesaria: actualiza tu tarjeta para tu pago de $1,250.00 a Acme Outdoor"
        )
        for body in (email.text, email.html):
            assert "Actualiza tu tarjeta" in body
            assert "$1,250.00" in body  # es-MX formats like this
            assert "5 de diciembre de 2026" in body
            assert "Recordatorio 1 de 3" in body
        assert email.text.startswith("Hola, Ana:")
        assert '<html lang="es">' in email.html

    def test_last_reminder_says_so(self) -> None:
        email = render_email(message_context(retry_number=2, max_retries=3))

        assert email.subject.startswith("Last reminder: ")
        assert "Reminder 3 of 3 (the last one)" in email.text

    def test_html_escapes_what_the_merchant_and_customer_typed(self) -> None:
        email = render_email(
            message_context(merchant_name='Tom & "Jerry" <Ltd>', customer_name="<script>x")
        )

        assert "Tom &amp; &#34;Jerry&#34; &lt;Ltd&gt;" in email.html
        assert "<script>" not in email.html
        assert 'Tom & "Jerry" <Ltd>' in email.text

    def test_currencies_without_minor_units(self) -> None:
        email = render_email(message_context(amount_minor=1250, currency="JPY"))

        assert "¥1,250" in email.text
        assert "¥12.50" not in email.text

    def test_an_unknown_time_zone_shows_utc(self) -> None:
        email = render_email(message_context(timezone="Mars/Olympus_Mons"))

        assert "December 5, 2026, 3:00\u202fPM UTC" in email.text


class TestSms:
    @pytest.mark.parametrize(
        ("locale", "category", "expected"),
        [
            ("en", "soft", "Retry it here"),
            ("en", "customer_action", "Please update your card here"),
            ("es", "soft", "Vuelve a intentarlo en"),
            ("es", "customer_action", "Actualiza tu tarjeta en"),
        ],
    )
    def test_text_fits_the_decline(self, locale: str, category: str, expected: str) -> None:
        text = render_sms(message_context(locale=locale, decline_category=category))

        assert expected in text
        assert PAY_URL in text
        assert len(text) <= SMS_MAX_CHARS

    @pytest.mark.parametrize("locale", ["en", "es"])
    @pytest.mark.parametrize("category", ["soft", "customer_action"])
    def test_worst_case_stays_short_and_in_the_gsm_alphabet(
        self, locale: str, category: str
    ) -> None:
        # Given the longest values an attempt can carry (ASCII merchant name of 200 chars)
        message = message_context(
            locale=locale,
            decline_category=category,
            merchant_name="Very Long Merchant Name Incorporated " * 5,
            customer_name="Maximiliano " * 15,
            amount_minor=99_999_999_999,
            currency="EUR",
            timezone="America/Argentina/ComodRivadavia",
            retry_number=9,
            max_retries=10,
        )

        # When the SMS is rendered
        text = render_sms(message)

        # Then it fits two concatenated SMS and needs no UCS-2 encoding
        assert len(text) <= SMS_MAX_CHARS
        assert set(text) <= GSM7_CHARACTERS
        assert PAY_URL in text
        assert text.startswith("Very Long Merchant Name Inc...: ")

    def test_too_long_for_sms_is_an_error(self) -> None:
        with pytest.raises(rendering.RenderError, match="more than 320"):
            render_sms(message_context(pay_url="https://pay.example.test/" + "x" * 300))

    async def test_notifier_fails_the_message_instead_of_sending_a_cut_text(
        self, fake_providers: FakeProviders
    ) -> None:
        notifier = ProviderNotifier.from_settings(
            get_settings(), retry=TransientRetry(backoff_seconds=0)
        )

        outcome = await notifier.send(
            message_context(
                channel="sms",
                recipient="+34612345678",
                pay_url="https://pay.example.test/" + "x" * 300,
            )
        )
        await notifier.aclose()

        assert outcome.status == "failed"
        assert outcome.error_message is not None
        assert outcome.error_message.startswith("template: SMS is")
        assert fake_providers.requests == []


class TestWhatsApp:
    @pytest.mark.parametrize(
        ("locale", "language", "amount", "start"),
        [
            ("en-US", "en", "€49.99", "Hello, your payment of €49.99 to Acme Outdoor"),
            ("es-ES", "es", "49,99 €", "Hola, tu pago de 49,99 € a Acme Outdoor"),
        ],
    )
    def test_parameters_and_preview(
        self, locale: str, language: str, amount: str, start: str
    ) -> None:
        template = render_whatsapp(message_context(locale=locale))

        assert template.language == language
        assert template.parameters == (amount, "Acme Outdoor", PAY_URL)
        assert template.preview.startswith(start)
        assert template.preview.endswith(PAY_URL)

    def test_registered_body_uses_the_three_positional_parameters(self) -> None:
        assert whatsapp_template_body("en") == (
            "Hello, your payment of {{1}} to {{2}} did not go through. "
            "You can complete it securely here: {{3}}"
        )
        assert "{{1}}" in whatsapp_template_body("es")


class TestMissingVariables:
    @pytest.mark.parametrize("template", TEMPLATES)
    def test_every_variable_a_template_uses_is_provided(self, template: str) -> None:
        used = _variables_used(template)
        provided = set(template_variables(message_context()))

        assert used <= provided, f"{template} uses {used - provided}"

    @pytest.mark.parametrize("template", TEMPLATES)
    def test_a_missing_variable_raises_instead_of_rendering_a_blank(self, template: str) -> None:
        # Given reminders that take every branch of the templates
        contexts = [
            template_variables(message_context(decline_category=category, retry_number=n))
            for category in ("soft", "customer_action")
            for n in (0, 2)
        ]
        for name in sorted(_variables_used(template)):
            # When one variable the template uses is missing
            failures = 0
            for full in contexts:
                variables = {k: v for k, v in full.items() if k != name}
                try:
                    render(template, variables)
                except UndefinedError as error:
                    assert name in str(error)
                    failures += 1
            # Then rendering fails loudly (on every branch that reads it)
            assert failures > 0, f"{template} rendered without {name}"


def _variables_used(template: str) -> set[str]:
    source = (Path(rendering.TEMPLATE_DIR) / template).read_text()
    parsed = rendering._environment.parse(source)
    used = set(meta.find_undeclared_variables(parsed))
    for parent in meta.find_referenced_templates(parsed):
        if parent:
            parent_source = (Path(rendering.TEMPLATE_DIR) / parent).read_text()
            used |= meta.find_undeclared_variables(rendering._environment.parse(parent_source))
    return used


class TestSkeletons:
    """Fixed text is rendered once per shape; each message only fills in its own values."""

    CONTEXTS = [
        message_context(),
        message_context(customer_name=None, decline_category="hard", retry_number=2),
        message_context(merchant_name='A&B <Shop> "Outdoor"', pay_url=PAY_URL + "?a=1&b=<2>"),
        message_context(locale="es-MX", customer_name="", retry_number=1, max_retries=2),
        message_context(locale="es", decline_category="customer_action", currency="JPY"),
    ]

    @pytest.mark.parametrize("template", TEMPLATES)
    def test_every_template_renders_as_jinja_renders_it(self, template: str) -> None:
        for context in self.CONTEXTS:
            # Given the variables of a message
            variables = template_variables(context)

            # When it is rendered (through its cached skeleton)
            rendered = render(template, variables)

            # Then the text is Jinja's, escaping included
            assert rendered == rendering._environment.get_template(template).render(**variables)

    @pytest.mark.parametrize("template", [t for t in TEMPLATES if "sms" not in t])
    def test_templates_that_print_their_values_have_a_skeleton(self, template: str) -> None:
        # Given a template that only prints or tests its per-message values
        variables = template_variables(message_context())

        # When its skeleton is asked for
        skeleton = rendering._skeleton(
            rendering.DEFAULT_TEMPLATES, template, rendering._shape(variables)
        )

        # Then there is one
        assert skeleton is not None

    @pytest.mark.parametrize("template", [t for t in TEMPLATES if "sms" in t])
    def test_a_template_that_filters_a_value_is_rendered_by_jinja(self, template: str) -> None:
        # Given the SMS template, which truncates the merchant's name
        variables = template_variables(message_context())

        # When its skeleton is asked for
        skeleton = rendering._skeleton(
            rendering.DEFAULT_TEMPLATES, template, rendering._shape(variables)
        )

        # Then there is none: a placeholder cannot stand for a truncated value
        assert skeleton is None
