#!/usr/bin/env bash
# tests/fuzz/run.sh [SECONDS] -- builds the libFuzzer targets with clang (ASan+UBSan) and
# runs each for SECONDS (default 60), corpus in tests/fuzz/corpus/NAME (seeded from
# contracts/ and a few timestamps). A crash leaves its input in build-fuzz/.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-60}
if [ ! -f build-fuzz/build.ninja ]; then
    CC=clang meson setup build-fuzz --buildtype=debugoptimized -Dtests=disabled -Dfuzz=true \
        -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
fi
ninja -C build-fuzz --quiet fuzz-contract fuzz-text fuzz-csv fuzz-dsl fuzz-props fuzz-jtree fuzz-template fuzz-token \
    fuzz-webhook_sendgrid fuzz-webhook_mailgun fuzz-webhook_postmark fuzz-webhook_generic fuzz-webhook_ses
for t in contract text csv dsl props jtree template token webhook_sendgrid webhook_mailgun webhook_postmark \
    webhook_generic webhook_ses; do
    mkdir -p "tests/fuzz/corpus/$t"
    case $t in
        contract) cp -n contracts/*.json "tests/fuzz/corpus/$t/" ;;
        text) printf '2024-02-29T12:00:00+05:30' > tests/fuzz/corpus/$t/ts1
              printf 'Z\xc3\xb6e \xe2\x9c\x93 "q"\n' > tests/fuzz/corpus/$t/utf8 ;;
        csv) printf '\001external_id,event,occurred_at,order_id,amount,currency,created_at\nc1,order_created,,o1,2.5,INR,2026-01-01T00:00:00Z\nc2,visit,2026-01-02,,,,\n' > tests/fuzz/corpus/$t/events
             printf '\000external_id,email,email_consent,city,ltv\nc1,a@b.co,unsubscribed,Pune,3\nc1,,subscribed,"Goa, IN",x\n' > tests/fuzz/corpus/$t/contacts ;;
        jtree) printf '{"batch":[{"type":"track","userId":42,"event":"a\\u00e9\\ud83d\\ude00","properties":{"v":-1.5e-7,"n":null,"l":[true,false,{}]}}],"sentAt":"2026-01-01T00:00:00Z"}' > tests/fuzz/corpus/$t/batch ;;
        props) printf '{"a":"P\\u00e9ne\\n","b":[1,{"c":"]"}],"":-2.5e3,"x\\ny":true}' > tests/fuzz/corpus/$t/obj ;;
        template) printf '<p>Hi {{ first_name | capitalize | default: "there" }},</p>\n<a href="{{ unsubscribe_url }}">bye</a> &amp; {{ evil|upcase }}{{ x | default: \x27it\\\x27s\x27 }}' > tests/fuzz/corpus/$t/basic ;;
        token) printf 'dQAAAAAAAAAqAAAAAAAAIykAAAAA.AAAAAAAAAAAAAAAAAAAAAA' > tests/fuzz/corpus/$t/shape ;;
        # The webhook targets read "LINE1\nLINE2\nBODY": two header lines, then a body.
        webhook_sendgrid) printf '1588788367\nMEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH2j/0=\n[{"email":"ann@example.com","timestamp":1700000002,"smtp-id":"<12.345.k3@mail.example.com>","event":"delivered","category":["welcome"],"sg_event_id":"rWVYmVk90MjZJ9iohOBa3w==","sg_message_id":"W86EgYT6SQKk0lRflfLRsA.filterdrecv-1.0","response":"250 OK","engage_message_id":"12.345"},{"email":"bob@example.com","timestamp":1513299569,"event":"bounce","type":"blocked","bounce_classification":"Technical","status":"5.1.1","reason":"550 5.1.1 user unknown","sg_event_id":"6g4ZI7SA-xmRDv57GoPIPw=="},{"email":"ann@example.com","timestamp":1700000007,"event":"open","sg_machine_open":true,"useragent":"Mozilla/5.0","sg_event_id":"e3"},{"email":"ann@example.com","timestamp":1700000009,"event":"click","url":"https://example.com/p","sg_event_id":"e4"},{"event":"processed","sg_event_id":"e5"}]' > tests/fuzz/corpus/$t/events ;;
        webhook_mailgun) printf '{"signature":{"timestamp":"1700000000","token":"c1d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5","signature":"c22e1ab1941fcfd2fe795039076dd3a199e0c927b428ad43435af70200f491dc"},"event-data":{"event":"failed","severity":"permanent","reason":"bounce","timestamp":1521233195.375624,"id":"G9Bn5sl1TC6nu79C8C0bwg","recipient":"alice@example.com","delivery-status":{"code":550,"message":"5.1.1 The email account does not exist.","description":""},"user-variables":{"engage_message_id":"12.345"},"message":{"headers":{"message-id":"12.345.k3@mail.example.com"}},"client-info":{"user-agent":"Mozilla/5.0"}}}' > tests/fuzz/corpus/$t/failed ;;
        webhook_postmark) printf 'Basic aG9vazpzM2NyZXQ=\ns3cret\n{"RecordType":"Bounce","ID":42,"Type":"HardBounce","TypeCode":1,"MessageID":"883953f4-6105-42a2-a16a-77a8eac79483","Email":"john@example.com","BouncedAt":"2014-08-01T13:28:10.2735393-04:00","Details":"smtp;550 5.1.1","Metadata":{"engage_message_id":"12.345"}}' > tests/fuzz/corpus/$t/bounce ;;
        webhook_generic) printf '1700000000\nv1=bd97bb54931235648e88ad4447dbae8f25e7657bb8745944b79b550dbbed2533\n{"events":[{"id":"ev-1","type":"delivered","message_id":"12.345","email":"ann@example.com","timestamp":1700000000},{"id":"ev-2","type":"clicked","message_id":"<12.346.k3@mail.example.com>","timestamp":"2024-02-29T12:00:00.125+05:30","url":"https://example.com/p?a=1","user_agent":"Mozilla/5.0"},{"id":7,"type":"bounced_hard","message_id":"12_347","reason":"550 5.1.1 no such user"}]}' > tests/fuzz/corpus/$t/events ;;
        webhook_ses) cat > tests/fuzz/corpus/$t/bounce <<'EOF'
{
  "Type" : "Notification",
  "MessageId" : "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
  "TopicArn" : "arn:aws:sns:us-east-1:123456789012:ses-events",
  "Subject" : "Amazon SES Email Event Notification",
  "Message" : "{\"notificationType\":\"Bounce\",\"bounce\":{\"bounceType\":\"Transient\",\"bounceSubType\":\"General\",\"bouncedRecipients\":[{\"emailAddress\":\"jane@example.com\",\"status\":\"5.4.4\",\"action\":\"failed\",\"diagnosticCode\":\"smtp; 550 5.4.4 no route\"},{\"emailAddress\":\"r\u00e9my@example.com\"}],\"timestamp\":\"2016-01-27T14:59:44.101Z\"},\"mail\":{\"timestamp\":\"2016-01-27T14:59:38.237Z\",\"messageId\":\"00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000\",\"destination\":[\"jane@example.com\"],\"headers\":[{\"name\":\"Message-ID\",\"value\":\"<42.9001.x9@mail.example.com>\"}],\"commonHeaders\":{\"messageId\":\"<42.9001.x9@mail.example.com>\"},\"tags\":{\"engage_message_id\":[\"42_9001\"]}}}",
  "Timestamp" : "2026-03-08T12:00:00.123Z",
  "SignatureVersion" : "2",
  "Signature" : "EXAMPLEpH+DcEwjAPg8O9mY8dReBSwksfg2S7WKQcikcNKWLQjwu6A4VbeS0QHVCkhRS7fUQvi2egU3N858fiTDN6bkkOxYDVrY0Ad8L10Hs3zH81mtnPk5uvvolIC1CXGu43obcgFxeL3khZl8IKvO61GWB6jI9b5+gLPoBc1Q=",
  "SigningCertURL" : "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem",
  "UnsubscribeURL" : "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:us-east-1:123456789012:ses-events:0c5e1c4b"
}
EOF
                     printf '{"eventType":"Click","click":{"link":"https://example.com/a?b=c","timestamp":"2017-08-09T23:51:25.570Z","userAgent":"Mozilla/5.0"},"mail":{"timestamp":"2017-08-09T23:50:00.000Z","messageId":"q1","destination":["a@example.com"],"tags":{"engage_message_id":["7_8"]}}}' > tests/fuzz/corpus/$t/click
                     printf '{"Type":"SubscriptionConfirmation","MessageId":"m","Token":"t","TopicArn":"a","Message":"You have chosen","SubscribeURL":"https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription","Timestamp":"2026-01-01T00:00:00Z","SignatureVersion":"1","Signature":"AAAA","SigningCertURL":"https://x/"}' > tests/fuzz/corpus/$t/confirm ;;
        dsl) cp -n bench/segments/*.json "tests/fuzz/corpus/$t/"
             printf '{"op":"OR","rules":[{"type":"attribute","field":"nick","op":"contains","value":"σίσ"},{"type":"behavior","event":"app_open","op":"did_event","within_days":7,"where":[{"field":"screen","op":"in","value":["home"]},{"field":"ok","op":"neq","value":true}]}]}' > tests/fuzz/corpus/$t/where ;;
    esac
    (cd build-fuzz && ./fuzz-$t -max_total_time="$SECS" -max_len=4096 "../tests/fuzz/corpus/$t" 2>&1 | tail -n 3)
done
