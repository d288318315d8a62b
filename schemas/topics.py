"""Kafka topics. A topic is owned by the one service that writes it (its name says which).

- ``brokerage.packages`` (brokerage, keyed by package id): PackageRequested, OfferMade, PackagePlaced,
  PackageUnplaced, PackageCancelled, PackageStarted, PackageHandedBack, PackageReopened,
  PackageEnded, PackagePaused, PackageResumed, ChangeOffered, PackageChanged, ChangeDeclined, ChangeWithdrawn,
  PackageHandedOver, PackageReviewed, FundingRecorded, DischargeRequested, DischargeReferred,
  DischargeFallbackUnavailable, DischargeReferralReleased,
  ExceptionRequested, ExceptionFirstApproved, ExceptionDecided.
- ``brokerage.service-agreements`` (brokerage, keyed by package id): ServiceAgreementRecorded - the
  hand-off to finance (decision record 0109), a topic of its own so that a finance system's connector
  can be allowed this topic and nothing about offers, bids or the brokerage's work.
- ``providers.answers`` (providers, keyed by package id): BidSubmitted, OfferDeclined, ChangeAnswered.
- ``providers.registry`` (providers, keyed by provider id): ProviderUpdated, ProviderQualityRecorded.
- ``notifications.confirmations`` (notifications, keyed by package id): PlacementConfirmed, NotificationFailed.
- ``homecare.dead-letters`` (any consumer, the original key): the original bytes with origin/error headers.
"""

from schemas import events as ev

PACKAGES = "brokerage.packages"
SERVICE_AGREEMENTS = "brokerage.service-agreements"
ANSWERS = "providers.answers"
REGISTRY = "providers.registry"
CONFIRMATIONS = "notifications.confirmations"
DEAD_LETTERS = "homecare.dead-letters"

TOPIC_OF: dict[type[ev.Envelope], str] = {
    ev.PackageRequested: PACKAGES,
    ev.OfferMade: PACKAGES,
    ev.PackagePlaced: PACKAGES,
    ev.PackageUnplaced: PACKAGES,
    ev.PackageCancelled: PACKAGES,
    ev.PackageStarted: PACKAGES,
    ev.PackageHandedBack: PACKAGES,
    ev.PackageReopened: PACKAGES,
    ev.PackageEnded: PACKAGES,
    ev.PackagePaused: PACKAGES,
    ev.PackageResumed: PACKAGES,
    ev.ChangeOffered: PACKAGES,
    ev.PackageChanged: PACKAGES,
    ev.ChangeDeclined: PACKAGES,
    ev.ChangeWithdrawn: PACKAGES,
    ev.PackageHandedOver: PACKAGES,
    ev.PackageReviewed: PACKAGES,
    ev.FundingRecorded: PACKAGES,
    ev.DischargeRequested: PACKAGES,
    ev.DischargeReferred: PACKAGES,
    ev.DischargeFallbackUnavailable: PACKAGES,
    ev.DischargeReferralReleased: PACKAGES,
    ev.ServiceAgreementRecorded: SERVICE_AGREEMENTS,
    ev.ChangeAnswered: ANSWERS,
    ev.ExceptionRequested: PACKAGES,
    ev.ExceptionDecided: PACKAGES,
    ev.ExceptionFirstApproved: PACKAGES,
    ev.BidSubmitted: ANSWERS,
    ev.OfferDeclined: ANSWERS,
    ev.ProviderUpdated: REGISTRY,
    ev.ProviderQualityRecorded: REGISTRY,
    ev.PlacementConfirmed: CONFIRMATIONS,
    ev.NotificationFailed: CONFIRMATIONS,
}

ALL = (PACKAGES, SERVICE_AGREEMENTS, ANSWERS, REGISTRY, CONFIRMATIONS, DEAD_LETTERS)
EVENT_TOPICS = (PACKAGES, SERVICE_AGREEMENTS, ANSWERS, REGISTRY, CONFIRMATIONS)

# The one service that may write each event topic (its Kafka principal alone has WRITE on it, and
# consumers accept an event only from the topic that owns its type, written by that producer).
OWNER = {
    PACKAGES: "brokerage",
    SERVICE_AGREEMENTS: "brokerage",
    ANSWERS: "providers",
    REGISTRY: "providers",
    CONFIRMATIONS: "notifications",
}

# What each service's consumer group reads.
CONSUMED_BY = {
    "brokerage": (ANSWERS, REGISTRY),
    "providers": (PACKAGES,),
    "notifications": (PACKAGES,),
    # Every event topic, and the dead letters (counted, never applied: a subscriber of their own).
    "reporting": (*EVENT_TOPICS, DEAD_LETTERS),
}


def topic_for(event: ev.Envelope) -> str:
    return TOPIC_OF[type(event)]
