"""The framework's fixed vocabulary, shared by the contracts and the services.

Zones are *not* here: they are versioned reference data (deploy/reference/), re-drawn over
time without a code change. Bands, urgencies, needs and decline reasons are the words the
contracts themselves use, so they live with the contracts.
"""

from enum import StrEnum


class Band(StrEnum):
    """Pricing band of the place where the visits happen (not of the zone)."""

    urban = "urban"
    fringe = "fringe"
    rural = "rural"
    isolated = "isolated"


class Urgency(StrEnum):
    hospital_discharge = "hospital_discharge"
    reablement_step_down = "reablement_step_down"
    community = "community"


class CareNeed(StrEnum):
    personal_care = "personal_care"
    medication = "medication"
    dementia = "dementia"
    mobility = "mobility"
    nutrition = "nutrition"
    end_of_life = "end_of_life"
    mental_health = "mental_health"


class Funding(StrEnum):
    council = "council"
    nhs = "nhs"


class Tier(StrEnum):
    prime = "prime"
    supplementary = "supplementary"
    open = "open"
    adjacent = "adjacent"  # escalation: providers of the neighbouring zones


class DeclineReason(StrEnum):
    capacity = "capacity"
    geography = "geography"
    call_times = "call_times"
    skills = "skills"
    price = "price"
    other = "other"


# ---- reason codes: why a package's life changed -------------------------------------------
#
# Events carry these codes, never the words staff or providers typed: free text can hold a
# person's name, NHS number or diagnosis, and Kafka keeps what it is given for the topic's
# retention. The text, when there is any, stays in the database of the service it was typed
# into (docs/guide/reason-codes.md). ``other`` is the way out of each list; the text then says why.


class CancelReason(StrEnum):
    """Why a broker cancelled a package before care started."""

    no_longer_needed = "no_longer_needed"  # needs met another way, or recovered
    moved_to_residential_care = "moved_to_residential_care"
    admitted_to_hospital = "admitted_to_hospital"
    person_died = "person_died"
    family_arranged_care = "family_arranged_care"  # family or a direct payment took it on
    person_declined = "person_declined"
    moved_out_of_area = "moved_out_of_area"
    requested_in_error = "requested_in_error"  # duplicate or wrong details: request it again
    other = "other"


class HandBackReason(StrEnum):
    """Why a provider handed a package back (recorded by a broker)."""

    staff_shortage = "staff_shortage"
    cannot_cover_call_times = "cannot_cover_call_times"
    needs_exceed_skills = "needs_exceed_skills"  # the care needed grew beyond what it can give
    travel_not_viable = "travel_not_viable"
    relationship_breakdown = "relationship_breakdown"
    provider_leaving_area = "provider_leaving_area"
    other = "other"


class ExceptionDecisionReason(StrEnum):
    """Why a broker approved, or refused, paying above the band rate."""

    no_provider_at_band_rate = "no_provider_at_band_rate"
    urgent_discharge = "urgent_discharge"
    continuity_of_care = "continuity_of_care"  # keep the carers the person already knows
    specialist_needs = "specialist_needs"
    rate_not_justified = "rate_not_justified"
    cheaper_option_expected = "cheaper_option_expected"  # wait for the next re-offer
    budget_not_approved = "budget_not_approved"
    other = "other"


class UnplacedReason(StrEnum):
    """Why a package joined the unplaced queue (decided by the brokerage, not typed)."""

    no_eligible_provider = "no_eligible_provider"
    no_acceptable_bid = "no_acceptable_bid"
    exception_rejected = "exception_rejected"
    no_eligible_bidder_above_rate = "no_eligible_bidder_above_rate"


class ReopenReason(StrEnum):
    """Why a placed package was taken from its provider and brokered again."""

    provider_suspended = "provider_suspended"
    provider_left = "provider_left"


class EndReason(StrEnum):
    """Why a running package ended (decision record 0078). ``hospital_stay_exceeded_hold`` is the
    brokerage's own: a hospital pause ran past the provider's hold with no discharge."""

    died = "died"
    moved_to_residential_care = "moved_to_residential_care"  # a care or nursing home
    needs_met = "needs_met"  # recovered, reablement done, or met another way
    moved_out_of_area = "moved_out_of_area"
    ended_by_person = "ended_by_person"  # the person (or their representative) stopped it
    direct_payment = "direct_payment"  # the care continues, bought by the person with a direct payment (002)
    continuing_healthcare = "continuing_healthcare"  # the NHS took over the funding and the care
    hospital_stay_exceeded_hold = "hospital_stay_exceeded_hold"
    other = "other"


# The ending reasons staff may choose; the rest are the platform's own.
STAFF_END_REASONS = tuple(r for r in EndReason if r is not EndReason.hospital_stay_exceeded_hold)


class PauseReason(StrEnum):
    """Why a running package was paused (the provider keeps it for a configured hold)."""

    admitted_to_hospital = "admitted_to_hospital"
    respite_stay = "respite_stay"  # a short stay in a care home to give carers a break
    other = "other"


class ChangeReason(StrEnum):
    """Why a running package's hours, visit pattern or needs changed (decision record 0082)."""

    needs_increased_after_fall = "needs_increased_after_fall"
    needs_increased = "needs_increased"  # a decline in health or a carer no longer able to help
    reablement_progress = "reablement_progress"  # more independent after reablement: usually fewer hours
    review_outcome = "review_outcome"  # a review of the package recommended it
    person_request = "person_request"  # the person (or their representative) asked for it
    other = "other"


class ReviewOutcome(StrEnum):
    """What a review of a running package decided (decision record 0088)."""

    no_change = "no_change"  # the package goes on as it is
    changed = "changed"  # hours, visits or needs change: through the change flow (decision 0082)
    technology_enabled_care = "technology_enabled_care"  # equipment instead of some visits: a reduction
    ended = "ended"  # the package ends: through the ending flow (decision 0078)


class TechnologyEnabledCare(StrEnum):
    """Equipment that takes the place of some visits (a review's technology-enabled care outcome)."""

    telecare_alarm = "telecare_alarm"  # a pendant or pull-cord alarm answered by a response service
    falls_detector = "falls_detector"
    medication_dispenser = "medication_dispenser"  # an automated dispenser instead of a prompting call
    activity_sensors = "activity_sensors"  # movement or door sensors instead of a check-in call
    video_call = "video_call"  # a video check-in instead of a visit
    other = "other"


class Funder(StrEnum):
    """Who pays for (a share of) a package over a period (decision record 0089). ``joint`` is a split
    between two or more of the others, each with a percentage."""

    council = "council"  # the council's adult social care budget
    nhs_discharge = "nhs_discharge"  # NHS discharge funding: the first weeks after a hospital discharge
    nhs_continuing_healthcare = "nhs_continuing_healthcare"  # fully NHS-funded care (CHC)
    joint = "joint"  # council and NHS (or others) share the cost by a recorded split
    self_funder = "self_funder"  # the person pays the whole cost
    direct_payment = "direct_payment"  # council money paid to the person, who buys the care


# The funders a joint split shares the cost among: every funder but ``joint`` itself.
SHARE_FUNDERS = tuple(f for f in Funder if f is not Funder.joint)


class TopUpPayer(StrEnum):
    """Who pays the difference when the person chose a provider above the band rate (a top-up),
    as against an above-rate exception the council approves and pays."""

    third_party = "third_party"  # a relative or a charity (the usual "third-party top-up")
    person = "person"  # the person themselves, where the rules allow a first-party top-up


class InHouseService(StrEnum):
    """The council's own home care services a hospital discharge can be referred to (decision record
    0097): in-house reablement (HART, 000:240-244) and the Crisis Response service, which "provides
    emergency support to people at home if commissioned services are unavailable" (000:236-238).
    Each has its own capacity in carer hours a week (deploy/reference/discharge.yaml)."""

    reablement = "reablement"
    crisis_response = "crisis_response"


class ReferralStep(StrEnum):
    """Why a hospital discharge went to an in-house service (decision record 0097)."""

    reablement_first = "reablement_first"  # reablement potential: reablement before long-term care (002:1767)
    fallback = "fallback"  # still unplaced at the deadline: the service of last resort


class AgreementReason(StrEnum):
    """Why a service agreement record was written for finance (decision record 0109): the change to
    the package that made it, or a correction of an earlier record's terms."""

    placed = "placed"  # awarded: a new agreement from the agreed start date
    started = "started"  # care began on another day than agreed: the start date corrected
    changed = "changed"  # the hours changed: the old agreement ends, a new one starts
    ended = "ended"  # the package ended: the agreement ends the day before the ending's date
    cancelled = "cancelled"  # cancelled before care started: nothing is payable under it
    handed_back = "handed_back"  # the provider gave the package back: ends when the notice does
    rebrokered = "rebrokered"  # the provider was suspended or left: ends before the new start
    handed_over = "handed_over"  # after a declined change: ends the day the new provider starts
    paused = "paused"  # an unpaid hold: the agreement ends the day before the pause
    resumed = "resumed"  # after an unpaid hold: a new agreement from the day visits restart
    funding_changed = "funding_changed"  # a new funding record: the same terms, a new split


class AgreementStatus(StrEnum):
    """Whether anything is payable under a service agreement record."""

    agreed = "agreed"  # payable from its start date to its end date (none: until further notice)
    cancelled = "cancelled"  # withdrawn before any care: nothing payable


class Payer(StrEnum):
    """Who pays a line of a service agreement's weekly cost (decision records 0089, 0109): a funder's
    share of the cost at the band rate, or the part above the band rate."""

    council = "council"
    nhs_discharge = "nhs_discharge"
    nhs_continuing_healthcare = "nhs_continuing_healthcare"
    self_funder = "self_funder"
    direct_payment = "direct_payment"
    third_party_top_up = "third_party_top_up"  # a relative or charity pays the part above the band rate
    person_top_up = "person_top_up"  # the person pays the part above the band rate


class ChangeOutcome(StrEnum):
    """How an offered change to a running package ended for its current provider."""

    declined = "declined"  # the provider said no, with a decline reason code
    window_closed = "window_closed"  # no answer within the window


class ChangeWithdrawnBecause(StrEnum):
    """Why the brokerage withdrew a change still awaiting its provider's answer: what happened to the
    package meanwhile (a change is for a package that runs on with its provider)."""

    paused = "paused"  # a hospital stay or respite: the package is paused
    ended = "ended"  # the package ends
    handed_back = "handed_back"  # its provider gave it back
    rebrokered = "rebrokered"  # its provider was suspended or left the framework


class NotificationFailure(StrEnum):
    """Why a message could not be delivered (the error's own words stay in the notifications
    service's deliveries, readable at ``GET /packages/{id}/notifications``)."""

    no_usable_channel = "no_usable_channel"
    no_contact_registered = "no_contact_registered"
    address_refused = "address_refused"  # a permanent refusal by the channel
    retries_exhausted = "retries_exhausted"


# ---- the provider quality and risk register (decision 0103) ---------------------------------


class QualityChange(StrEnum):
    """What changed on a provider's quality and risk register (ProviderQualityRecorded)."""

    cqc_location = "cqc_location"  # the CQC location id the provider is registered under
    cqc_rating = "cqc_rating"  # a rating and its publication date, entered or imported from CQC's CSV
    local_risk = "local_risk"  # the council's RAG reviewed, with a reason code
    complaint_received = "complaint_received"
    complaint_closed = "complaint_closed"
    improvement_plan_opened = "improvement_plan_opened"
    improvement_plan_closed = "improvement_plan_closed"
    hand_back = "hand_back"  # the provider handed a package back (from PackageHandedBack)
    late_start = "late_start"  # care started after the placement's agreed start date


class RiskReason(StrEnum):
    """Why the contracts and quality team set a provider's local risk rating (the reviewer's own
    words stay in the providers service's register)."""

    scheduled_review = "scheduled_review"  # the weekly review, nothing new
    cqc_inspection = "cqc_inspection"
    complaints = "complaints"
    safeguarding = "safeguarding"
    missed_or_late_visits = "missed_or_late_visits"
    hand_backs = "hand_backs"
    staffing = "staffing"  # recruitment, retention, agency use
    financial = "financial"  # the provider's financial standing
    improvement_plan = "improvement_plan"  # progress (or not) against a quality improvement plan
    other = "other"


class ComplaintTheme(StrEnum):
    """What a complaint about a provider is about (its words stay in the providers service)."""

    missed_visit = "missed_visit"
    late_visit = "late_visit"
    care_quality = "care_quality"
    staff_conduct = "staff_conduct"
    medication = "medication"
    communication = "communication"
    continuity_of_carers = "continuity_of_carers"
    charging = "charging"
    other = "other"


# What each code means, in words for people (console lists, notifications, docs).
REASON_WORDS: dict[str, str] = {
    CancelReason.no_longer_needed: "care no longer needed",
    CancelReason.moved_to_residential_care: "moved to residential care",
    CancelReason.admitted_to_hospital: "admitted to hospital",
    CancelReason.person_died: "the person died",
    CancelReason.family_arranged_care: "family or a direct payment arranged the care",
    CancelReason.person_declined: "the person declined the care",
    CancelReason.moved_out_of_area: "moved out of the area",
    CancelReason.requested_in_error: "requested in error",
    HandBackReason.staff_shortage: "not enough care staff",
    HandBackReason.cannot_cover_call_times: "cannot cover the call times",
    HandBackReason.needs_exceed_skills: "the care needed is beyond the provider's skills",
    HandBackReason.travel_not_viable: "travel to the visits is not viable",
    HandBackReason.relationship_breakdown: "the care relationship broke down",
    HandBackReason.provider_leaving_area: "the provider is leaving the area",
    ExceptionDecisionReason.no_provider_at_band_rate: "no provider will take it at the band rate",
    ExceptionDecisionReason.urgent_discharge: "an urgent hospital discharge",
    ExceptionDecisionReason.continuity_of_care: "continuity of care",
    ExceptionDecisionReason.specialist_needs: "specialist needs",
    ExceptionDecisionReason.rate_not_justified: "the rate asked is not justified",
    ExceptionDecisionReason.cheaper_option_expected: "a cheaper option is expected at the next re-offer",
    ExceptionDecisionReason.budget_not_approved: "the budget was not approved",
    UnplacedReason.no_eligible_provider: "no eligible provider",
    UnplacedReason.no_acceptable_bid: "no acceptable bid on any tier",
    UnplacedReason.exception_rejected: "the above-rate bid was refused",
    UnplacedReason.no_eligible_bidder_above_rate: "no bidder above the rate is still eligible",
    ReopenReason.provider_suspended: "the provider was suspended from the framework",
    ReopenReason.provider_left: "the provider left the framework",
    EndReason.died: "the person died",
    EndReason.moved_to_residential_care: "moved to residential care",
    EndReason.needs_met: "care needs met",
    EndReason.moved_out_of_area: "moved out of the area",
    EndReason.ended_by_person: "ended at the person's request",
    EndReason.direct_payment: "care now bought with a direct payment",
    EndReason.continuing_healthcare: "the NHS took over (continuing healthcare)",
    EndReason.hospital_stay_exceeded_hold: "the hospital stay outlasted the provider's hold",
    PauseReason.admitted_to_hospital: "admitted to hospital",
    PauseReason.respite_stay: "a respite stay",
    ChangeReason.needs_increased_after_fall: "needs increased after a fall",
    ChangeReason.needs_increased: "needs increased",
    ChangeReason.reablement_progress: "progress in reablement",
    ChangeReason.review_outcome: "the outcome of a review",
    ChangeReason.person_request: "at the person's request",
    ReviewOutcome.no_change: "no change",
    ReviewOutcome.changed: "a change to the package",
    ReviewOutcome.technology_enabled_care: "technology-enabled care instead of some visits",
    ReviewOutcome.ended: "the package ends",
    TechnologyEnabledCare.telecare_alarm: "a telecare alarm",
    TechnologyEnabledCare.falls_detector: "a falls detector",
    TechnologyEnabledCare.medication_dispenser: "an automated medication dispenser",
    TechnologyEnabledCare.activity_sensors: "activity sensors",
    TechnologyEnabledCare.video_call: "video calls",
    InHouseService.reablement: "the council's reablement service (HART)",
    InHouseService.crisis_response: "the council's crisis response service",
    ReferralStep.reablement_first: "reablement first, before long-term care",
    ReferralStep.fallback: "no provider found in time: the council's service of last resort",
    ChangeOutcome.declined: "the provider declined the change",
    ChangeOutcome.window_closed: "the provider did not answer in time",
    ChangeWithdrawnBecause.paused: "the package is paused",
    ChangeWithdrawnBecause.handed_back: "the package was handed back",
    ChangeWithdrawnBecause.rebrokered: "the package is being offered to other providers",
    # ChangeWithdrawnBecause.ended reads as ReviewOutcome.ended: "the package ends".
    NotificationFailure.no_usable_channel: "no usable channel",
    NotificationFailure.no_contact_registered: "no contact registered",
    NotificationFailure.address_refused: "the address was refused",
    NotificationFailure.retries_exhausted: "gave up after repeated failures",
    DeclineReason.capacity: "no free capacity",
    DeclineReason.geography: "too far, or not an area it covers",
    DeclineReason.call_times: "cannot cover the call times",
    DeclineReason.skills: "lacks the skills the needs require",
    DeclineReason.price: "the band rate does not cover its costs",
    "other": "other",
}


# Funders in words (apart from the reason codes: ``direct_payment`` is an ending reason too).
FUNDER_WORDS: dict[str, str] = {
    Funder.council: "the council",
    Funder.nhs_discharge: "NHS discharge funding",
    Funder.nhs_continuing_healthcare: "NHS continuing healthcare",
    Funder.joint: "joint funding",
    Funder.self_funder: "the person (self-funder)",
    Funder.direct_payment: "a direct payment",
    TopUpPayer.third_party: "a third party (family or charity)",
    TopUpPayer.person: "the person",
}


def reason_words(code: str) -> str:
    """A reason code in words for people; an unknown code as itself, underscores spaced."""
    return REASON_WORDS.get(code, code.replace("_", " "))
